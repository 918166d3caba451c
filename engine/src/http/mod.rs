//! The HTTP face of the engine. The router reads as a table of contents:
//! host endpoints under the reserved `/_kiln/v1` prefix, GraphQL and MCP,
//! and everything else to the plugins.

pub mod admin;
pub mod dispatch;
pub mod error;
pub mod request_id;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};

use crate::config::{Config, GraphqlConfig, Secret};
use crate::graphql;
use crate::registry::Registry;
use crate::store::Database;
use crate::store::cache::Cache;
use error::ApiError;

#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub registry: Arc<Registry>,
    pub db: Database,
    pub cache: Cache,
    pub admin_token: Option<Secret>,
    /// API keys, for the admin API (and, with the identity layer, everything).
    pub keys: crate::identity::api_keys::ApiKeys,
    pub max_request_body: usize,
    pub max_response_body: usize,
    pub graphql: GraphqlConfig,
    /// The MCP endpoint, unless `mcp.enabled` is off.
    pub mcp: Option<crate::mcp::McpService>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: &Config, registry: Arc<Registry>, db: Database, cache: Cache) -> Self {
        let mcp = config.mcp.enabled.then(|| {
            crate::mcp::service(
                registry.clone(),
                &config.mcp,
                usize::try_from(config.http.max_request_body.0).unwrap_or(usize::MAX),
            )
        });
        let keys = crate::identity::api_keys::ApiKeys::new(
            crate::store::api_keys::KeyStore::new(db.clone()),
            std::time::Duration::from_millis(config.admin.key_cache_ttl_ms),
        );
        AppState(Arc::new(AppInner {
            registry,
            db,
            cache,
            admin_token: config.admin.token.clone(),
            keys,
            max_request_body: usize::try_from(config.http.max_request_body.0).unwrap_or(usize::MAX),
            max_response_body: usize::try_from(config.http.max_response_body.0)
                .unwrap_or(usize::MAX),
            graphql: config.graphql.clone(),
            mcp,
        }))
    }
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/plugins", get(admin::plugins))
        .route("/graphql", get(admin::graphql))
        .route("/mcp", get(admin::mcp))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    let router = Router::new()
        .route("/_kiln/v1/health", get(admin::health))
        .nest("/_kiln/v1/admin", admin)
        // Reserved: answered by the host, never by a plugin.
        .route("/_kiln", any(reserved))
        .route("/_kiln/{*rest}", any(reserved))
        .route(
            "/graphql",
            get(graphql::http::get)
                .post(graphql::http::post)
                .fallback(graphql::http::other_method),
        )
        .route("/graphql/ws", get(graphql::ws::upgrade))
        .route(
            "/graphql/stream",
            get(graphql::sse::stream).post(graphql::sse::stream),
        )
        .route("/graphql/{*rest}", any(reserved))
        .route("/mcp/{*rest}", any(reserved));
    let router = match &state.mcp {
        Some(mcp) => router.route_service("/mcp", mcp.clone()),
        None => router.route("/mcp", any(reserved)),
    };
    router
        .fallback(dispatch::plugin_route)
        .layer(middleware::from_fn(request_id::layer))
        .with_state(state)
}

async fn reserved(request: Request) -> axum::response::Response {
    let id = request
        .extensions()
        .get::<request_id::RequestId>()
        .map(|r| r.0.to_string());
    let mut e = ApiError::not_found(request.uri().path());
    e.request_id = id;
    e.into_response()
}
