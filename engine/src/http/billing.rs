//! `GET /_kiln/v1/billing/me`: a caller reads their own account — balance,
//! pending charges, holds, what they may spend — and their newest entries.
//! A host endpoint, so it checks the credential itself (the `/_kiln` paths
//! skip the request path's authentication).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, auth};
use crate::request::error::ApiError;
use crate::request::id::RequestId;

/// How many of the newest entries the answer carries.
const RECENT: u32 = 20;

pub async fn me(State(app): State<AppState>, request: Request) -> Response {
    let request_id = RequestId::of(request.extensions());
    let authenticated = app
        .auth
        .authenticate(
            request.method(),
            request.uri(),
            request.headers(),
            request_id.clone(),
        )
        .await;
    let principal = match authenticated {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the credential whose account to read (Authorization: Bearer <API key or JWT>)",
            )
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .with_request_id(&request_id)
            .into_response();
        }
        Err(failed) => {
            return auth::rejected(&failed)
                .with_request_id(&request_id)
                .into_response();
        }
    };
    let account = app.billing.account_of(&principal);
    let store = app.billing.store();
    let read = async {
        Ok::<_, crate::store::DataError>((
            store.account(&account).await?,
            store.entries(&account, RECENT, None).await?,
        ))
    };
    match read.await {
        Ok((found, recent)) => {
            let sums = found.map(|a| (a.balance, a.pending, a.held, a.available));
            let (balance, pending, held, available) = sums.unwrap_or_default();
            Json(serde_json::json!({
                "account": account,
                "exists": sums.is_some(),
                "balance_micros": balance,
                "pending_micros": pending,
                "held_micros": held,
                "available_micros": available,
                "recent": recent,
            }))
            .into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "billing_unavailable",
            format!("the ledger cannot be read now: {e}"),
        )
        .with_request_id(&request_id)
        .into_response(),
    }
}
