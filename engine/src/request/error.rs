//! The one JSON error shape every host endpoint answers with:
//! `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::runtime::CallError;
use crate::runtime::bindings::types::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub request_id: Option<String>,
    /// Extra headers such as `Allow` or `Retry-After`.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Machine-readable facts behind the message (`error.details`), such
    /// as the price and the available amount of a 402.
    pub details: Option<Box<serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            request_id: None,
            headers: Vec::new(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn with_request_id(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_string());
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route matches {}", crate::text::echo(path)),
        )
    }

    /// A plugin call that failed in the host's terms; a crash's detail
    /// only when `verbose` (dev mode).
    pub fn from_call(plugin: &str, error: &CallError, verbose: bool) -> Self {
        match error {
            CallError::Busy(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "plugin_busy",
                format!("plugin '{plugin}' is {error}; retry shortly"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            CallError::Timeout { .. } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "plugin_timeout",
                format!("plugin '{plugin}' {error}"),
            ),
            CallError::OutOfFuel { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_cpu_limit",
                format!("plugin '{plugin}' {error}"),
            ),
            CallError::OutOfMemory { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_memory_limit",
                format!("plugin '{plugin}' {error}"),
            ),
            CallError::Trap { detail } if verbose => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_crashed",
                format!("plugin '{plugin}' crashed: {detail}"),
            ),
            CallError::NoExport(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_no_export",
                format!("plugin '{plugin}' {error}, which this request needs"),
            ),
            // The trap detail (a panic message, a backtrace) stays in the log.
            CallError::Trap { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_crashed",
                format!(
                    "plugin '{plugin}' crashed while handling the request; the engine log has \
                     the details under this request id"
                ),
            ),
        }
    }

    /// 429 `rate_limited` with `Retry-After`: the one shape of every
    /// rate-limit refusal (groups and the admin API).
    pub fn rate_limited(message: String, wait: std::time::Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).with_header(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(super::buckets::seconds(wait)),
        )
    }

    /// An error the plugin returned on purpose.
    pub fn from_plugin(code: ErrorCode, message: String) -> Self {
        let (status, code) = match code {
            ErrorCode::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            ErrorCode::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ErrorCode::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorCode::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorCode::Unprocessable => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ErrorCode::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Self::new(status, code, crate::text::cut(&message, 4096))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "request_id": self.request_id,
            }
        });
        if let Some(details) = self.details {
            body["error"]["details"] = *details;
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
