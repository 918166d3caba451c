//! The host's own endpoints under `/_kiln/v1`: an open health check and the
//! admin API, which answers 401 unless the request carries an API key with
//! the `admin` role or the configured admin token (403 for a key without
//! the role).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::request_id::RequestId;
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
            if let Some(p) = snapshot.plugins.get(&stem) {
                let (running, waiting) = p.load_now();
                v["calls"] = json!({ "running": running, "waiting": waiting });
                v["instances"] = match p.warm_idle() {
                    Some(idle) => json!({ "reuse": "warm", "idle": idle }),
                    None => json!({ "reuse": "fresh" }),
                };
            }
            v
        })
        .collect();
    Json(json!({ "plugins": plugins }))
}

/// The merged GraphQL schema: its SDL and, for every field, the plugin
/// behind it and the `@auth` / `@price` / `@topic` the host keeps for it.
pub async fn graphql(State(app): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = app.registry.snapshot();
    Json(match &snapshot.graphql {
        Some(g) => json!({ "sdl": g.schema.sdl(), "fields": g.fields }),
        None => json!({ "sdl": null, "fields": [] }),
    })
}

/// Every MCP tool and prompt: the plugin behind it, its schemas and
/// annotations, and the access rule and price the host keeps for it.
pub async fn mcp(State(app): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = app.registry.snapshot();
    let tools: Vec<_> = snapshot
        .mcp
        .tools()
        .map(|(plugin, tool)| {
            json!({
                "name": tool.name,
                "plugin": plugin.manifest.name,
                "title": tool.title,
                "description": tool.description,
                "input_schema": tool.input_schema,
                "output_schema": tool.output_schema,
                "annotations": tool.annotations,
                "access": tool.access,
            })
        })
        .collect();
    let prompts: Vec<_> = snapshot
        .mcp
        .prompts()
        .map(|(plugin, prompt)| {
            json!({
                "name": prompt.name,
                "plugin": plugin.manifest.name,
                "title": prompt.title,
                "description": prompt.description,
                "arguments": prompt.arguments,
                "access": prompt.access,
            })
        })
        .collect();
    Json(json!({ "tools": tools, "prompts": prompts }))
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
                crate::host::log::cut(&name, 64)
            ),
        )
        .into_response(),
        Err(e) => data_error(e).into_response(),
    }
}

/// Who made an admin call, for the log: the principal, or the admin token.
fn actor(caller: &Option<axum::Extension<Caller>>) -> String {
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
pub async fn require_admin(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.to_string())
        .unwrap_or_default();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let (Some(given), Some(expected)) = (presented, &app.admin_token)
        && constant_time_eq(expected.expose().as_bytes(), given.trim().as_bytes())
    {
        return next.run(request).await;
    }
    let outcome = app
        .auth
        .authenticate(
            request.method(),
            request.uri(),
            request.headers(),
            std::sync::Arc::from(request_id.as_str()),
        )
        .await;
    let error = match outcome {
        Ok(Some(principal)) if principal.has_role("admin") => {
            request
                .extensions_mut()
                .insert(Caller(Some(std::sync::Arc::new(principal))));
            return next.run(request).await;
        }
        Ok(Some(principal)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "'{}' lacks the admin role this API requires",
                principal.subject
            ),
        ),
        Ok(None) if app.admin_token.is_none() => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs an admin credential: create an API key with \
             `kiln keys create --name NAME --roles admin` (or set admin.token) and send it as \
             Authorization: Bearer <key>",
        ),
        Ok(None) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing bearer token: send Authorization: Bearer <API key or admin token>",
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
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
        Err(failed) => super::auth::rejected(&failed),
    };
    let mut error = error.with_request_id(&request_id);
    if error.status == StatusCode::UNAUTHORIZED && error.headers.is_empty() {
        error = error.with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kiln-admin\""),
        );
    }
    error.into_response()
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
