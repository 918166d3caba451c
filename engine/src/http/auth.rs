//! Authentication on the request path: every request except the host's own
//! `/_kiln` endpoints passes here once. The caller (or its absence) is put
//! in the request's extensions as [`Caller`] for routes, GraphQL and MCP to
//! check against their access rules; a credential that does not check out
//! ends the request with 401 at once.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::request_id::RequestId;
pub use crate::identity::Caller;
use crate::identity::access::Denied;
use crate::identity::authenticator::AuthFailed;

pub async fn layer(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    match app.auth.authenticate(request.headers()).await {
        Ok(principal) => {
            request
                .extensions_mut()
                .insert(Caller(principal.map(Arc::new)));
            next.run(request).await
        }
        Err(failed) => {
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.to_string())
                .unwrap_or_default();
            tracing::info!(request_id, reason = %failed, "credential refused");
            rejected(&failed)
                .with_request_id(&request_id)
                .into_response()
        }
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
