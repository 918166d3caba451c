//! Authentication on the request path: every request except the host's own
//! `/_kiln` endpoints passes here once. The caller (or its absence) is put
//! in the request's extensions as [`Caller`] for routes, GraphQL and MCP to
//! check against their access rules; a credential that does not check out
//! ends the request with 401 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
pub use crate::identity::Caller;
use crate::identity::access::Denied;
use crate::identity::authenticator::AuthFailed;
use crate::request::error::ApiError;
use crate::request::id::RequestId;

/// Runs `next` with the request's [`Caller`] in its extensions, or answers
/// 401 (503 when the credential cannot be checked) without calling it.
pub async fn around<F>(
    app: &AppState,
    mut request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let request_id = RequestId::of(request.extensions());
    let outcome = app
        .auth
        .authenticate(
            request.method(),
            request.uri(),
            request.headers(),
            request_id.clone(),
        )
        .await;
    match outcome {
        Ok(principal) => {
            request
                .extensions_mut()
                .insert(Caller(principal.map(Arc::new)));
            next(request).await
        }
        Err(failed) => {
            let ip = app.rate_limiter.client_ip(&request);
            tracing::info!(request_id = %request_id, ip, reason = %failed, "credential refused");
            if let Some(count) = app.auth_failures.note(&ip).await {
                app.audit
                    .record(
                        &ip,
                        "auth.failures",
                        Some(request.uri().path()),
                        serde_json::json!({
                            "count": count,
                            "window_s": FAILURE_WINDOW.as_secs(),
                            "last_reason": failed.reason,
                        }),
                    )
                    .await;
            }
            rejected(&failed)
                .with_request_id(&request_id)
                .into_response()
        }
    }
}

/// Failed authentications from one client within this window count
/// together; the audit log gets a line when they reach `FAILURE_THRESHOLD`
/// and at every hundred after.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const FAILURE_THRESHOLD: u32 = 5;

pub struct FailureWatch {
    counts: moka::future::Cache<String, Arc<AtomicU32>>,
}

impl Default for FailureWatch {
    fn default() -> Self {
        FailureWatch {
            counts: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }
}

impl FailureWatch {
    /// Counts one failure from `client`; the count when it deserves an
    /// audit line.
    pub async fn note(&self, client: &str) -> Option<u32> {
        let counter = self
            .counts
            .get_with(client.to_string(), async { Arc::new(AtomicU32::new(0)) })
            .await;
        let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
        (count == FAILURE_THRESHOLD || (count > FAILURE_THRESHOLD && count % 100 == 0))
            .then_some(count)
    }
}

/// 401 for a credential that does not check out (503 when it could not be
/// checked).
pub fn rejected(failed: &AuthFailed) -> ApiError {
    if failed.unavailable {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            failed.reason.clone(),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        failed.reason.clone(),
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    )
}

/// 401 or 403 for an access rule that refused the caller.
pub fn denied(denied: &Denied) -> ApiError {
    match denied {
        Denied::Unauthenticated { .. } => {
            ApiError::new(StatusCode::UNAUTHORIZED, denied.code(), denied.to_string())
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
        }
        Denied::Forbidden { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, denied.code(), denied.to_string())
        }
    }
}
