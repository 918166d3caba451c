//! Every request gets an id: the client's `X-Request-Id` when it is sane,
//! otherwise a fresh one. It is echoed in the response, passed to plugins'
//! log lines and put in every error body.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct RequestId(pub Arc<str>);

/// A fresh request id: a UUID v7, ordered by time. The ledger keys each
/// charge by its request id, and ids that only grow are added at the end
/// of that unique index: a batch of charges dirties a page or two of it,
/// where random ids dirtied (and first read) one page per charge.
pub fn new_id() -> Arc<str> {
    Arc::from(uuid::Uuid::now_v7().simple().to_string())
}

impl RequestId {
    /// The id the request-id layer gave the request whose extensions these
    /// are; `-` outside that layer (never on the engine's router).
    pub fn of(extensions: &axum::http::Extensions) -> Arc<str> {
        extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| Arc::from("-"))
    }
}

/// `RequestId` as a handler argument: the request's id, never a rejection.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestId(RequestId::of(&parts.extensions)))
    }
}

/// Runs `handle` on `request` with its id: the client's when sane, a new
/// one otherwise, put in the request's extensions, on the `request` span
/// every log line of the request sits in, and on the response.
pub async fn with_id<F>(mut request: Request, handle: impl FnOnce(Request) -> F) -> Response
where
    F: Future<Output = Response>,
{
    let id: Arc<str> = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map(Arc::from)
        .unwrap_or_else(new_id);
    request.extensions_mut().insert(RequestId(id.clone()));
    // Every log line of the request carries its id (and each plugin call
    // adds its own span inside). Debug level, as tower-http's TraceLayer
    // does by default: at the default `info` the spans cost nothing, and
    // `KILN_LOG=debug` shows them.
    let span = tracing::debug_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = handle(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

fn is_acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_short_plain_ids_are_accepted() {
        assert!(super::is_acceptable("abc-123_x.y:z"));
        assert!(!super::is_acceptable(""));
        assert!(!super::is_acceptable("a b"));
        assert!(!super::is_acceptable("<script>"));
        assert!(!super::is_acceptable(&"a".repeat(129)));
    }
}
