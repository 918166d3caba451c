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
    let read = async {
        Ok::<_, crate::store::DataError>((
            app.billing.balance(&account).await?,
            app.billing.store().entries(&account, RECENT, None).await?,
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

// ------------------------------------------------------------ the admin API
//
// Under `/_kiln/v1/admin/billing`, behind `require_admin` like the rest of
// the admin API. Every movement is audited with who made it.

use axum::Extension;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::identity::Caller;
use crate::store::DataError;
use crate::store::ledger::Applied;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
    before: Option<i64>,
}

/// `?limit=` of the reads that come newest first or by name (no `before`:
/// an unknown member is refused by the query's own check).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    limit: Option<u32>,
}

/// A read's limit: 100 unless given, 1 to 1000; else what is wrong with
/// the query.
fn limit_of<T>(
    query: Queried<T>,
    limit: impl FnOnce(&T) -> Option<u32>,
) -> Result<(u32, T), String> {
    let Query(query) = query.map_err(|e| e.body_text())?;
    let n = limit(&query).unwrap_or(100);
    if !(1..=1000).contains(&n) {
        return Err("limit must be between 1 and 1000".into());
    }
    Ok((n, query))
}

fn bad_request(message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).into_response()
}

fn ledger_error(e: DataError) -> Response {
    match e {
        DataError::Invalid(m) => bad_request(m),
        DataError::Unavailable(detail) => {
            tracing::error!(error = %detail, "the billing ledger failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "billing_unavailable",
                "the ledger is unavailable; try again later (a movement whose answer was lost \
                 is safe to retry with the same Idempotency-Key)",
            )
            .into_response()
        }
    }
}

fn no_account(account: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no billing account {:?}", crate::text::echo(account)),
    )
    .into_response()
}

type Queried<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;
type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// `GET /_kiln/v1/admin/billing/accounts?limit=100`: accounts by name.
pub async fn accounts(State(app): State<AppState>, query: Queried<Limit>) -> Response {
    let limit = match limit_of(query, |q| q.limit) {
        Ok((limit, _)) => limit,
        Err(why) => return bad_request(why),
    };
    match app.billing.store().accounts(limit).await {
        Ok(accounts) => Json(json!({ "accounts": accounts })).into_response(),
        Err(e) => ledger_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    account: String,
}

/// `POST /_kiln/v1/admin/billing/accounts` `{"account": "key:ci"}`: 201
/// with the empty account, 409 when it exists.
pub async fn open_account(
    State(app): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Body<NewAccount>,
) -> Response {
    let account = match body {
        Ok(Json(b)) => b.account,
        Err(e) => return bad_request(e.body_text()),
    };
    match app.billing.open(&account).await {
        Ok(Applied::Opened) => {
            app.audit
                .record(
                    &super::admin::actor(&caller),
                    "billing.account_opened",
                    Some(&account),
                    json!({ "via": "admin-api" }),
                )
                .await;
            let created = app.billing.store().account(&account).await;
            match created {
                Ok(Some(a)) => (StatusCode::CREATED, Json(a)).into_response(),
                Ok(None) => no_account(&account),
                Err(e) => ledger_error(e),
            }
        }
        Ok(Applied::Exists) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("billing account {account:?} exists already"),
        )
        .into_response(),
        Ok(other) => ledger_error(DataError::Unavailable(format!(
            "unexpected ledger answer {other:?}"
        ))),
        Err(e) => ledger_error(e),
    }
}

/// `GET /_kiln/v1/admin/billing/accounts/{account}`: the running sums and
/// the same sums recomputed from the entries and holds (`derived`), which
/// must agree (`consistent`).
pub async fn account(State(app): State<AppState>, Path(account): Path<String>) -> Response {
    let store = app.billing.store();
    let read = async {
        Ok::<_, DataError>((
            store.account(&account).await?,
            store.derived(&account).await?,
        ))
    };
    match read.await {
        Ok((None, _)) => no_account(&account),
        Ok((Some(a), (balance, pending, held))) => {
            let consistent = (a.balance, a.pending, a.held) == (balance, pending, held);
            Json(json!({
                "account": a,
                "derived": { "balance": balance, "pending": pending, "held": held },
                "consistent": consistent,
            }))
            .into_response()
        }
        Err(e) => ledger_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovementBody {
    amount_micros: u64,
    reason: Option<String>,
}

/// `POST /_kiln/v1/admin/billing/accounts/{account}/credit`
/// `{"amount_micros": 5000000, "reason": "top-up"}`, with an optional
/// `Idempotency-Key` header that makes a retry change nothing.
pub async fn credit(
    State(app): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Body<MovementBody>,
) -> Response {
    movement(app, caller, account, &headers, body, true).await
}

/// `POST /_kiln/v1/admin/billing/accounts/{account}/debit`: as `credit`;
/// 409 `overdrawn` when the account has less available.
pub async fn debit(
    State(app): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Body<MovementBody>,
) -> Response {
    movement(app, caller, account, &headers, body, false).await
}

async fn movement(
    app: AppState,
    caller: Option<Extension<Caller>>,
    account: String,
    headers: &HeaderMap,
    body: Body<MovementBody>,
    credit: bool,
) -> Response {
    let wanted = match body {
        Ok(Json(b)) => b,
        Err(e) => return bad_request(e.body_text()),
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(_)) => return bad_request("Idempotency-Key must be visible ASCII"),
    };
    let reason = wanted.reason.as_deref();
    let done = if credit {
        app.billing
            .credit(&account, wanted.amount_micros, reason, key)
            .await
    } else {
        app.billing
            .debit(&account, wanted.amount_micros, reason, key)
            .await
    };
    match done {
        Ok(Applied::Adjusted { entry, balance }) => {
            let action = if credit {
                "billing.credit"
            } else {
                "billing.debit"
            };
            app.audit
                .record(
                    &super::admin::actor(&caller),
                    action,
                    Some(&account),
                    json!({ "micros": wanted.amount_micros, "entry": entry, "reason": reason,
                            "idempotency_key": key, "via": "admin-api" }),
                )
                .await;
            Json(json!({ "account": account, "entry": entry, "balance_micros": balance, "replayed": false }))
                .into_response()
        }
        // A retry: the first movement's entry, nothing changed.
        Ok(Applied::AlreadyApplied { entry, amount })
            if u64::try_from(amount) == Ok(wanted.amount_micros) =>
        {
            Json(json!({ "account": account, "entry": entry, "replayed": true })).into_response()
        }
        // The same key for a different movement: a client mistake, not a retry.
        Ok(Applied::AlreadyApplied { entry, amount }) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            format!(
                "this Idempotency-Key was used for a movement of {amount} micros (entry {entry}), \
                 not {}; nothing changed",
                wanted.amount_micros
            ),
        )
        .into_response(),
        Ok(Applied::NoAccount) => no_account(&account),
        Ok(Applied::Overdrawn { available }) => ApiError::new(
            StatusCode::CONFLICT,
            "overdrawn",
            format!(
                "account {account:?} has {available} micros available; a debit of {} would overdraw it",
                wanted.amount_micros
            ),
        )
        .with_details(json!({ "available_micros": available }))
        .into_response(),
        Ok(other) => ledger_error(DataError::Unavailable(format!(
            "unexpected ledger answer {other:?}"
        ))),
        Err(e) => ledger_error(e),
    }
}

/// `GET /_kiln/v1/admin/billing/accounts/{account}/entries?limit=100&before=<id>`:
/// newest first; page with the last id seen.
pub async fn entries(
    State(app): State<AppState>,
    Path(account): Path<String>,
    page: Queried<Page>,
) -> Response {
    let (limit, before) = match limit_of(page, |p| p.limit) {
        Ok((limit, page)) => (limit, page.before),
        Err(why) => return bad_request(why),
    };
    match app.billing.store().entries(&account, limit, before).await {
        Ok(entries) => Json(json!({ "account": account, "entries": entries })).into_response(),
        Err(e) => ledger_error(e),
    }
}

/// `GET /_kiln/v1/admin/billing/settlements?limit=100`: newest first.
pub async fn settlements(State(app): State<AppState>, query: Queried<Limit>) -> Response {
    let limit = match limit_of(query, |q| q.limit) {
        Ok((limit, _)) => limit,
        Err(why) => return bad_request(why),
    };
    match app.billing.store().settlements(limit).await {
        Ok(settlements) => Json(json!({ "settlements": settlements })).into_response(),
        Err(e) => ledger_error(e),
    }
}

/// `POST /_kiln/v1/admin/billing/settle`: settles what is pending now, on
/// this engine; 409 when another settler holds the lock.
pub async fn settle_now(
    State(app): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Response {
    match app.billing.settle().await {
        Ok(Some(report)) => {
            app.audit
                .record(
                    &super::admin::actor(&caller),
                    "billing.settled",
                    Some(&report.settlement),
                    json!({ "entries": report.entries, "micros": report.amount,
                            "batches": report.batches, "via": "admin-api" }),
                )
                .await;
            Json(report).into_response()
        }
        Ok(None) => ApiError::new(
            StatusCode::CONFLICT,
            "settling",
            "another engine or command is settling now; what it does not finish, the next run does",
        )
        .into_response(),
        Err(e) => ledger_error(e),
    }
}
