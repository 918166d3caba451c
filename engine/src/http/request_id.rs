//! Every request gets an id: the client's `X-Request-Id` when it is sane,
//! otherwise a fresh one. It is echoed in the response, passed to plugins'
//! log lines and put in every error body.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct RequestId(pub Arc<str>);

pub async fn layer(mut request: Request, next: Next) -> Response {
    let id: Arc<str> = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()));
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
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
