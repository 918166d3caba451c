//! Puts every request's path into its canonical form (`crate::path`) before
//! routing, or answers 400 when it has none. Everything after this layer —
//! the router, authentication, access rules, rate limits, the plugin —
//! reads the rewritten URI, so one request meets one decision.

use axum::extract::Request;
use axum::http::{StatusCode, Uri, uri::PathAndQuery};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::request_id::RequestId;
use crate::path::{PathError, canonical};

pub async fn layer(mut request: Request, next: Next) -> Response {
    let uri = request.uri();
    // `OPTIONS *` has no path to normalise; the router answers it.
    if uri.path() == "*" {
        return next.run(request).await;
    }
    match canonical(uri.path()) {
        Ok(path) if path == uri.path() => next.run(request).await,
        Ok(path) => match rewrite(uri, &path) {
            Some(uri) => {
                *request.uri_mut() = uri;
                // The outer router recorded the spelling as sent; the inner
                // one records the canonical URI when this one is gone.
                request
                    .extensions_mut()
                    .remove::<axum::extract::OriginalUri>();
                next.run(request).await
            }
            None => refuse(&request, None),
        },
        Err(e) => refuse(&request, Some(e)),
    }
}

fn rewrite(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")).ok()?,
        None => PathAndQuery::try_from(path).ok()?,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

fn refuse(request: &Request, error: Option<PathError>) -> Response {
    let reason = error.map_or_else(|| "path cannot be rewritten".to_string(), |e| e.to_string());
    let mut e = ApiError::new(StatusCode::BAD_REQUEST, "bad_path", reason);
    e.request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.to_string());
    e.into_response()
}
