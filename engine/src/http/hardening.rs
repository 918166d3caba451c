//! What every response and request gets regardless of who serves it:
//! security headers, CORS, a header size limit and a time limit.
//!
//! - `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and
//!   `Referrer-Policy: no-referrer` on every response, unless the plugin set
//!   its own; `Strict-Transport-Security` when `http.hsts` says the engine is
//!   reached over HTTPS (TLS ends at a proxy in front of it).
//! - CORS from `[http.cors]`: no CORS headers unless origins are listed, so
//!   browsers keep their same-origin default.
//! - Requests whose headers together exceed `http.max_header_bytes` get 431.
//! - A handler that has not started its response within
//!   `http.request_timeout_ms` gets 504; streams (SSE, WebSocket) are not cut
//!   once they started.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::request::error::ApiError;
use crate::request::id::RequestId;

/// `[http.cors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call from a browser (`https://app.example.com`),
    /// or `["*"]` for any (never with credentials). Empty: no CORS.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// Let browsers send cookies and `Authorization` cross-origin.
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            allowed_headers: ["authorization", "content-type", "x-api-key", "x-request-id"]
                .map(String::from)
                .to_vec(),
            expose_headers: [
                "x-request-id",
                "retry-after",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
            ]
            .map(String::from)
            .to_vec(),
            allow_credentials: false,
            max_age_s: 600,
        }
    }
}

impl CorsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && self.allow_credentials {
            return Err("allowed_origins = [\"*\"] cannot go with allow_credentials".into());
        }
        if any && self.allowed_origins.len() > 1 {
            return Err("\"*\" must be the only entry of allowed_origins".into());
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| {
            *o != "*"
                && (!(o.starts_with("http://") || o.starts_with("https://"))
                    || o.ends_with('/')
                    || HeaderValue::from_str(o).is_err())
        }) {
            return Err(format!(
                "origin {bad:?} must be scheme://host[:port] without a trailing slash"
            ));
        }
        for m in &self.allowed_methods {
            Method::from_bytes(m.as_bytes()).map_err(|_| format!("method {m:?} is invalid"))?;
        }
        for h in self.allowed_headers.iter().chain(&self.expose_headers) {
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("header {h:?} is invalid"))?;
        }
        Ok(())
    }

    /// The tower-http layer, or none when no origin is allowed.
    pub fn layer(&self) -> Option<tower_http::cors::CorsLayer> {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        if self.allowed_origins.is_empty() {
            return None;
        }
        let origin = if self.allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.allowed_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        let parse_names = |names: &[String]| -> Vec<HeaderName> {
            names
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect()
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods(
                    self.allowed_methods
                        .iter()
                        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                        .collect::<Vec<_>>(),
                )
                .allow_headers(parse_names(&self.allowed_headers))
                .expose_headers(parse_names(&self.expose_headers))
                .allow_credentials(self.allow_credentials)
                .max_age(Duration::from_secs(self.max_age_s)),
        )
    }
}

static X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");
static X_FRAME_OPTIONS: HeaderName = HeaderName::from_static("x-frame-options");
static REFERRER_POLICY: HeaderName = HeaderName::from_static("referrer-policy");

/// The header size limit, the time limit and the security headers, around
/// `next`.
pub async fn around<F>(
    app: &AppState,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let request_id = RequestId::of(request.extensions()).to_string();
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let closes = crate::request::body::may_close(request.version());
    let mut response = if header_bytes > app.max_header_bytes {
        let e = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request's headers take {header_bytes} bytes; the limit is {}",
                app.max_header_bytes
            ),
        )
        .with_request_id(&request_id);
        // The connection may hold more header bytes than were read; over
        // HTTP/2 the stream ends instead (the header is not allowed there).
        if closes {
            e.with_header(header::CONNECTION, HeaderValue::from_static("close"))
                .into_response()
        } else {
            e.into_response()
        }
    } else {
        match tokio::time::timeout(app.request_timeout, next(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                format!(
                    "the request took longer than {} ms",
                    app.request_timeout.as_millis()
                ),
            )
            .with_request_id(&request_id)
            .into_response(),
        }
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (&X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (&X_FRAME_OPTIONS, "DENY"),
        (&REFERRER_POLICY, "no-referrer"),
    ] {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), HeaderValue::from_static(value));
        }
    }
    if let Some(hsts) = &app.hsts
        && !headers.contains_key(header::STRICT_TRANSPORT_SECURITY)
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}
