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
use super::error::ApiError;
use super::request_id::RequestId;

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

/// Requires `Authorization: Bearer <credential>`: an API key with the
/// `admin` role (`kiln keys create --name NAME --roles admin`), or the
/// configured `admin.token`. Nothing else gets in; with neither configured,
/// nobody does.
pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
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
    let refusal = match presented {
        None if app.admin_token.is_none() => (
            StatusCode::UNAUTHORIZED,
            "the admin API is disabled until there is an admin credential: create an API key \
             with `kiln keys create --name NAME --roles admin`, or set admin.token"
                .to_string(),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send Authorization: Bearer <API key or admin token>".into(),
        ),
        Some(key) if key.starts_with("kk_") => match app.keys.verify(key).await {
            Ok(principal) if principal.has_role("admin") => return next.run(request).await,
            Ok(principal) => (
                StatusCode::FORBIDDEN,
                format!(
                    "API key '{}' lacks the admin role this API requires",
                    principal.subject
                ),
            ),
            Err(rejected) => (StatusCode::UNAUTHORIZED, rejected.to_string()),
        },
        Some(given) => match &app.admin_token {
            Some(expected) if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) => {
                return next.run(request).await;
            }
            Some(_) => (StatusCode::UNAUTHORIZED, "invalid admin token".into()),
            None => (
                StatusCode::UNAUTHORIZED,
                "the admin API is disabled: no admin.token is set; use an API key with the admin role"
                    .into(),
            ),
        },
    };
    let (status, message) = refusal;
    let code = if status == StatusCode::FORBIDDEN {
        "forbidden"
    } else {
        "unauthorized"
    };
    let mut error = ApiError::new(status, code, message).with_request_id(&request_id);
    if status == StatusCode::UNAUTHORIZED {
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
