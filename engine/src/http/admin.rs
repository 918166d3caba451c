//! The host's own endpoints under `/_kiln/v1`: an open health check and the
//! admin API, which answers 401 unless the request carries an API key with
//! the `admin` role or the configured admin token (403 for a key without
//! the role), within its own per-client rate limit and failure throttle
//! (see `admin_guard`).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::admin_guard::{ENGINE_ROWS_PER_WINDOW, Noted, tried_credential};
use super::auth::Caller;
use super::rate_limit::{LIMIT, POLICY, REMAINING, RESET};
use crate::request::buckets::seconds;
use crate::request::error::ApiError;
use crate::request::id::RequestId;
use crate::store::plugin_names::PluginNames;

/// 200 when the engine can serve, 503 (with the reason) when its database
/// does not answer within a second. The cache is reported but does not fail
/// the check: without it plugins still run, and calls that need it say so.
pub async fn health(State(app): State<AppState>) -> Response {
    let second = std::time::Duration::from_secs(1);
    let plugins = app.registry.snapshot().plugins.len();
    let cache = match tokio::time::timeout(second, app.cache.ping()).await {
        Ok(Ok(())) => json!({ "kind": app.cache.kind(), "status": "ok" }),
        Ok(Err(e)) => {
            json!({ "kind": app.cache.kind(), "status": "unavailable", "error": e.to_string() })
        }
        Err(_) => {
            json!({ "kind": app.cache.kind(), "status": "unavailable", "error": "no answer within 1 s" })
        }
    };
    let database = match tokio::time::timeout(second, app.db.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 1 s".to_string()),
    };
    let mut body = json!({
        "status": if database.is_none() { "ok" } else { "unavailable" },
        "plugins": plugins,
        "database": app.db.dialect(),
        "cache": cache,
    });
    match database {
        None => Json(body).into_response(),
        Some(reason) => {
            body["error"] = json!(format!("database: {reason}"));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Every plugin file: name, version, hash, routes, limits, state, last error,
/// and how busy it is right now.
pub async fn plugins(State(app): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = app.registry.snapshot();
    let plugins: Vec<serde_json::Value> = app
        .registry
        .statuses()
        .into_iter()
        .map(|(stem, status)| {
            let mut v = serde_json::to_value(&status).unwrap_or_default();
            let mut calls = serde_json::to_value(app.calls.of(&stem)).unwrap_or_default();
            if let Some(p) = snapshot.plugins.get(&stem) {
                calls["waiting"] = json!(p.waiting_now());
                v["instances"] = match p.warm_idle() {
                    Some(idle) => json!({ "reuse": "warm", "idle": idle }),
                    None => json!({ "reuse": "fresh" }),
                };
            }
            v["calls"] = calls;
            v
        })
        .collect();
    Json(json!({ "plugins": plugins }))
}

/// The merged GraphQL schema (the GraphQL front door's view).
pub async fn graphql(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::graphql::door::admin_view(&app.registry.snapshot()))
}

/// Every MCP tool and prompt and the sessions open (the MCP front door's
/// view).
pub async fn mcp(State(app): State<AppState>) -> Json<serde_json::Value> {
    let sessions = app.mcp.as_ref().map(|m| m.mcp.sessions.live());
    Json(crate::mcp::door::admin_view(
        &app.registry.snapshot(),
        sessions,
    ))
}

/// `GET /_kiln/v1/admin/keys`: every API key (never a secret or hash).
pub async fn list_keys(State(app): State<AppState>) -> Response {
    match app.auth.keys().list().await {
        Ok(keys) => Json(json!({ "keys": keys })).into_response(),
        Err(e) => data_error(e).into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// `POST /_kiln/v1/admin/keys` `{"name": "ci", "roles": ["reader"]}`: 201
/// with the key, shown this once.
pub async fn create_key(
    State(app): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    body: Result<Json<NewKeyRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(wanted) = match body {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
                .into_response();
        }
    };
    match app.auth.keys().create(&wanted.name, &wanted.roles).await {
        Ok(new) => {
            app.audit
                .record(
                    &actor(&caller),
                    "key.created",
                    Some(&new.record.key_id),
                    json!({ "name": new.record.name, "roles": new.record.roles, "via": "admin-api" }),
                )
                .await;
            let mut body = serde_json::to_value(&new.record).unwrap_or_default();
            body["key"] = json!(new.key);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => data_error(e).into_response(),
    }
}

/// `DELETE /_kiln/v1/admin/keys/{id_or_name}`: revokes at once on this
/// engine.
pub async fn revoke_key(
    State(app): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    axum::extract::Path(id_or_name): axum::extract::Path<String>,
) -> Response {
    match app.auth.keys().revoke(&id_or_name).await {
        Ok(Some(record)) => {
            let announced = app.revocations.announce(&record.key_id).await;
            app.audit
                .record(
                    &actor(&caller),
                    "key.revoked",
                    Some(&record.key_id),
                    json!({ "name": record.name, "via": "admin-api", "announced": announced }),
                )
                .await;
            Json(record).into_response()
        }
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no API key with id or name {id_or_name:?}"),
        )
        .into_response(),
        Err(e) => data_error(e).into_response(),
    }
}

/// `GET /_kiln/v1/admin/plugin-names`: which file owns each plugin name.
pub async fn plugin_names(State(app): State<AppState>) -> Response {
    match PluginNames::new(app.db.clone()).list().await {
        Ok(names) => Json(json!({ "names": names })).into_response(),
        Err(e) => data_error(e).into_response(),
    }
}

/// `DELETE /_kiln/v1/admin/plugin-names/{name}`: lets another file claim
/// the name, and with it the name's data. Audited.
pub async fn release_plugin_name(
    State(app): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match PluginNames::new(app.db.clone()).release(&name).await {
        Ok(Some(claim)) => {
            app.audit
                .record(
                    &actor(&caller),
                    "plugin_name.released",
                    Some(&claim.name),
                    json!({ "file": claim.file, "via": "admin-api" }),
                )
                .await;
            Json(claim).into_response()
        }
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no file owns the plugin name {:?}",
                crate::text::cut(&name, 64)
            ),
        )
        .into_response(),
        Err(e) => data_error(e).into_response(),
    }
}

/// Who made an admin call, for the log: the principal, or the admin token.
pub(super) fn actor(caller: &Option<axum::Extension<Caller>>) -> String {
    caller
        .as_ref()
        .and_then(|c| c.0.principal().map(|p| p.subject.clone()))
        .unwrap_or_else(|| "admin-token".into())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

/// `GET /_kiln/v1/admin/audit?limit=100&before=<id>`: the newest events
/// first; page with the last id seen.
pub async fn audit(
    State(app): State<AppState>,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let axum::extract::Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
                .into_response();
        }
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit must be between 1 and 1000",
        )
        .into_response();
    }
    match app.audit.recent(limit, query.before).await {
        Ok(events) => Json(json!({ "events": events })).into_response(),
        Err(e) => data_error(e).into_response(),
    }
}

fn data_error(e: crate::store::DataError) -> ApiError {
    match e {
        crate::store::DataError::Invalid(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m)
        }
        crate::store::DataError::Unavailable(detail) => {
            tracing::error!(error = %detail, "API key store failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the key store is unavailable; try again later",
            )
        }
    }
}

/// Requires the `admin` role: an API key or JWT that carries it (`kiln keys
/// create --name NAME --roles admin`), or the configured `admin.token`.
/// Nothing else gets in; with neither configured, nobody does.
///
/// Before any credential is looked at, the client IP must not be throttled
/// for failed admin authentications and must have a token left in its
/// admin bucket (`[admin.auth_failures]`, `[admin.rate_limit]`): both 429
/// with `Retry-After`. A failed authentication is counted and audited.
pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = RequestId::of(request.extensions()).to_string();
    let ip = app.rate_limiter.client_ip(&request);
    if let Some(wait) = app.admin_guard.blocked(&ip).await {
        let wait = seconds(wait).max(1);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!(
                "too many failed admin authentications from {ip}; the admin API refuses this \
                 client for {wait} s more"
            ),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(wait))
        .with_request_id(&request_id)
        .into_response();
    }
    let decision = app.admin_guard.take(&ip).await;
    let limit = app.admin_guard.limit();
    let headers = [
        (LIMIT.clone(), limit.burst.to_string()),
        (REMAINING.clone(), decision.remaining.to_string()),
        (RESET.clone(), seconds(decision.wait).to_string()),
        (
            POLICY.clone(),
            format!("{};w={}", limit.requests, limit.window_s),
        ),
    ];
    let mut response = if !decision.allowed {
        tracing::info!(request_id, ip, "admin API rate limited");
        ApiError::rate_limited(
            format!(
                "too many requests: the admin API allows {} per {} s per client (bursts of {}); \
                 retry in {} s",
                limit.requests,
                limit.window_s,
                limit.burst,
                seconds(decision.wait)
            ),
            decision.wait,
        )
        .with_request_id(&request_id)
        .into_response()
    } else {
        // Nesting strips `/_kiln/v1/admin` from the URI; the log names the
        // whole path the client asked for.
        let path = request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| request.uri().path().to_string());
        match authorize(&app, request, &request_id).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => {
                if let Some((tried, reason)) = &refusal.failure {
                    failed(&app, &ip, &path, tried, reason, &refusal.error, &request_id).await;
                }
                refusal.error.into_response()
            }
        }
    };
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// An admin request turned away, and — when the client's credential was at
/// fault, not the engine — what it tried and why that failed.
struct Refusal {
    error: ApiError,
    failure: Option<(String, String)>,
}

/// The credential check proper: the request with its caller, or why not.
async fn authorize(
    app: &AppState,
    mut request: Request,
    request_id: &str,
) -> Result<Request, Refusal> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let (Some(given), Some(expected)) = (presented, &app.admin_token)
        && constant_time_eq(expected.expose().as_bytes(), given.trim().as_bytes())
    {
        return Ok(request);
    }
    let tried = tried_credential(request.headers());
    let outcome = app
        .auth
        .authenticate(
            request.method(),
            request.uri(),
            request.headers(),
            std::sync::Arc::from(request_id),
        )
        .await;
    let (error, reason) = match outcome {
        Ok(Some(principal)) if principal.has_role("admin") => {
            request
                .extensions_mut()
                .insert(Caller(Some(std::sync::Arc::new(principal))));
            return Ok(request);
        }
        Ok(Some(principal)) => {
            let message = format!(
                "'{}' lacks the admin role this API requires",
                principal.subject
            );
            let who = match &principal.method {
                crate::identity::AuthMethod::ApiKey { key_id } => key_id.clone(),
                crate::identity::AuthMethod::Jwt { .. } => "jwt".into(),
                crate::identity::AuthMethod::Provider { name } => format!("provider:{name}"),
            };
            let error = ApiError::new(StatusCode::FORBIDDEN, "forbidden", message.clone());
            let error = error.with_request_id(request_id);
            return Err(Refusal {
                error,
                failure: Some((who, message)),
            });
        }
        Ok(None) if app.admin_token.is_none() => (
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin API needs an admin credential: create an API key with \
                 `kiln keys create --name NAME --roles admin` (or set admin.token) and send it as \
                 Authorization: Bearer <key>",
            ),
            "no credential".to_string(),
        ),
        Ok(None) => (
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token: send Authorization: Bearer <API key or admin token>",
            ),
            "no credential".to_string(),
        ),
        // A bearer that is neither the admin token nor a valid credential.
        Err(failed)
            if presented.is_some_and(|p| !p.starts_with(crate::identity::api_keys::PREFIX)) =>
        {
            let message = match app.admin_token {
                Some(_) => format!("invalid admin token ({failed})"),
                None => format!(
                    "the admin API is disabled for anything but an API key or JWT with the \
                     admin role (no admin.token is set): {failed}"
                ),
            };
            let reason = match app.admin_token {
                Some(_) => format!("invalid admin token ({failed})"),
                None => format!("not an admin credential and no admin.token is set ({failed})"),
            };
            (
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
                reason,
            )
        }
        // The engine could not check (a store down): not the client's fault.
        Err(failed) if failed.unavailable => {
            return Err(Refusal {
                error: super::auth::rejected(&failed).with_request_id(request_id),
                failure: None,
            });
        }
        Err(failed) => (super::auth::rejected(&failed), failed.reason.clone()),
    };
    let mut error = error.with_request_id(request_id);
    if error.status == StatusCode::UNAUTHORIZED && error.headers.is_empty() {
        error = error.with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kiln-admin\""),
        );
    }
    Err(Refusal {
        error,
        failure: Some((tried, reason)),
    })
}

/// Counts a failed admin authentication and audits it, within the bounds
/// the guard sets (so a flood cannot grow the table without end).
async fn failed(
    app: &AppState,
    ip: &str,
    path: &str,
    tried: &str,
    reason: &str,
    error: &ApiError,
    request_id: &str,
) {
    let (noted, engine_full) = app.admin_guard.failed(ip).await;
    let window_s = app.admin_guard.failure_window().as_secs();
    tracing::info!(
        request_id,
        ip,
        tried,
        reason,
        failures = noted.count(),
        "admin authentication failed"
    );
    if !matches!(noted, Noted::Silent { .. }) {
        app.audit
            .record(
                tried,
                "admin.auth_failed",
                Some(path),
                json!({
                    "ip": ip,
                    "reason": reason,
                    "status": error.status.as_u16(),
                    "failures": noted.count(),
                    "window_s": window_s,
                }),
            )
            .await;
    }
    if let Noted::Limit { count, retry } = noted {
        tracing::warn!(
            ip,
            failures = count,
            retry_after_s = seconds(retry),
            "admin API throttled for a client after failed authentications"
        );
        app.audit
            .record(
                ip,
                "admin.auth_throttled",
                Some(path),
                json!({
                    "ip": ip,
                    "failures": count,
                    "window_s": window_s,
                    "retry_after_s": seconds(retry),
                    "last_tried": tried,
                    "last_reason": reason,
                }),
            )
            .await;
    }
    if engine_full {
        tracing::warn!(
            rows = ENGINE_ROWS_PER_WINDOW,
            "failed admin authentications: the audit budget of this window is spent; further \
             ones are counted in the engine log only"
        );
        app.audit
            .record(
                "engine",
                "admin.auth_failed_unrecorded",
                None,
                json!({
                    "rows": ENGINE_ROWS_PER_WINDOW,
                    "window_s": window_s,
                    "note": "further failed admin authentications in this window get no row",
                }),
            )
            .await;
    }
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
