//! The HTTP face of the engine. The router reads as a table of contents:
//! host endpoints under the reserved `/_kiln/v1` prefix, GraphQL and MCP,
//! and everything else to the plugins.

pub mod admin;
pub mod admin_guard;
pub mod auth;
pub mod body;
pub mod canonical;
pub mod config;
pub mod connections;
pub mod dispatch;
pub mod error;
pub mod hardening;
pub mod rate_limit;
pub mod request_id;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};

use crate::config::{Config, Secret};
use crate::graphql;
use crate::graphql::GraphqlConfig;
use crate::registry::Registry;
use crate::store::Database;
use crate::store::cache::Cache;
use error::ApiError;

#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// Why the engine's shared state could not be built from its config; the
/// message says which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    RateLimits(String),
    #[error("{0}")]
    Revocations(String),
    #[error("{0}")]
    Identity(String),
}

pub struct AppInner {
    pub registry: Arc<Registry>,
    pub db: Database,
    pub cache: Cache,
    pub admin_token: Option<Secret>,
    /// Reads credentials (API keys, JWTs) into principals.
    pub auth: crate::identity::authenticator::Authenticator,
    /// Who may call which route, field, tool and prompt.
    pub access: Arc<crate::identity::access::AccessConfig>,
    pub max_request_body: usize,
    pub max_response_body: usize,
    pub max_header_bytes: usize,
    pub request_timeout: std::time::Duration,
    /// `Strict-Transport-Security`, when `http.hsts` is on.
    pub hsts: Option<axum::http::HeaderValue>,
    pub cors: crate::http::hardening::CorsConfig,
    pub rate_limiter: rate_limit::RateLimiter,
    /// Security-relevant actions, in the engine's database.
    pub audit: crate::store::audit::AuditLog,
    /// Tells other engines about revoked keys (Redis).
    pub revocations: crate::identity::revocations::Revocations,
    /// Counts failed authentications per client, for the audit log.
    pub auth_failures: auth::FailureWatch,
    /// The admin API's own rate limit and failed-authentication throttle.
    pub admin_guard: admin_guard::AdminGuard,
    pub graphql: GraphqlConfig,
    /// Crash details in answers (`kiln serve --dev`).
    pub verbose_errors: bool,
    /// WebSockets, event streams and subscriptions open now, bounded.
    pub streams: crate::streams::limits::StreamSlots,
    /// The MCP endpoint, unless `mcp.enabled` is off.
    pub mcp: Option<crate::mcp::Mcp>,
    /// Every plugin file's call counters (an observer of every call).
    pub calls: Arc<crate::runtime::stats::CallStats>,
    /// Cancelled when the engine starts to shut down: streams that would
    /// otherwise never end (subscriptions, event streams) watch it and end
    /// themselves, so the server's wait for open connections is short.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Fails when the identity config cannot be put to use (a key file
    /// that cannot be read, a key of the wrong kind).
    pub fn new(
        config: &Config,
        registry: Arc<Registry>,
        db: Database,
        cache: Cache,
        calls: Arc<crate::runtime::stats::CallStats>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Self, StateError> {
        let http = config.section::<config::HttpConfig>();
        let mcp_config = config.section::<crate::mcp::McpConfig>();
        let redis = || {
            config
                .redis
                .url
                .as_ref()
                .map(|url| (&config.redis, url.expose()))
        };
        let rate_limiter = rate_limit::RateLimiter::new(
            config.section::<rate_limit::RateLimits>().0,
            redis(),
            http.client_ip_header.as_deref(),
        )
        .map_err(StateError::RateLimits)?;
        let access = Arc::new(config.section::<crate::identity::access::AccessConfig>());
        let mcp = mcp_config.enabled.then(|| {
            crate::mcp::service(
                registry.clone(),
                access.clone(),
                &mcp_config,
                http.max_request_body(),
            )
        });
        let keys = crate::identity::api_keys::ApiKeys::new(
            crate::store::api_keys::KeyStore::new(db.clone()),
            std::time::Duration::from_millis(config.admin.key_cache_ttl_ms),
        );
        let revocations = crate::identity::revocations::Revocations::start(keys.clone(), redis())
            .map_err(StateError::Revocations)?;
        let audit = crate::store::audit::AuditLog::new(db.clone());
        let auth = crate::identity::authenticator::Authenticator::new(
            &config.section::<crate::identity::config::IdentityConfig>(),
            keys,
            registry.clone(),
        )
        .map_err(StateError::Identity)?;
        Ok(AppState(Arc::new(AppInner {
            registry,
            db,
            cache,
            admin_token: config.admin.token.clone(),
            auth,
            access,
            max_request_body: http.max_request_body(),
            max_response_body: http.max_response_body(),
            max_header_bytes: usize::try_from(http.max_header_bytes.0).unwrap_or(usize::MAX),
            request_timeout: std::time::Duration::from_millis(http.request_timeout_ms),
            hsts: http.hsts.then(|| {
                axum::http::HeaderValue::from_static("max-age=31536000; includeSubDomains")
            }),
            cors: http.cors.clone(),
            rate_limiter,
            audit,
            revocations,
            auth_failures: auth::FailureWatch::default(),
            admin_guard: admin_guard::AdminGuard::new(
                &config.admin.rate_limit,
                &config.admin.auth_failures,
            ),
            graphql: config.section::<GraphqlConfig>(),
            streams: crate::streams::limits::StreamSlots::new(
                config.section::<crate::streams::limits::StreamLimits>(),
            ),
            verbose_errors: config.verbose_errors,
            mcp,
            calls,
            shutdown,
        })))
    }
}

impl AppInner {
    /// Who a bounded resource (an MCP session, a stream) is counted
    /// against: the principal when the request has one, its IP otherwise.
    pub fn client_key(&self, request: &Request) -> String {
        match request
            .extensions()
            .get::<crate::identity::Caller>()
            .and_then(|c| c.principal())
        {
            Some(p) => format!("principal:{}", p.subject),
            None => format!("ip:{}", self.rate_limiter.client_ip(request)),
        }
    }

    /// A place for one more long-lived stream of the client making `request`.
    pub fn take_stream(
        &self,
        request: &Request,
    ) -> Result<crate::streams::limits::Held, crate::streams::limits::Refused> {
        self.streams.take(
            &self.client_key(request),
            crate::streams::limits::Kind::Stream,
        )
    }
}

/// A stream refused by `[streams]`: 503 or 429 with `Retry-After`.
pub fn stream_refused(refused: &crate::streams::limits::Refused) -> axum::response::Response {
    ApiError::new(refused.status(), "too_many_streams", refused.to_string())
        .with_header(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        )
        .into_response()
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/plugins", get(admin::plugins))
        .route("/graphql", get(admin::graphql))
        .route("/mcp", get(admin::mcp))
        .route("/keys", get(admin::list_keys).post(admin::create_key))
        .route(
            "/keys/{id_or_name}",
            axum::routing::delete(admin::revoke_key),
        )
        .route("/audit", get(admin::audit))
        .route("/plugin-names", get(admin::plugin_names))
        .route(
            "/plugin-names/{name}",
            axum::routing::delete(admin::release_plugin_name),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    // The host's own endpoints check their own credentials.
    let host = Router::new()
        .route("/_kiln/v1/health", get(admin::health))
        .nest("/_kiln/v1/admin", admin)
        // Reserved: answered by the host, never by a plugin.
        .route("/_kiln", any(reserved))
        .route("/_kiln/{*rest}", any(reserved));
    let router = Router::new()
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
        Some(_) => router.route("/mcp", any(crate::mcp::endpoint)),
        None => router.route("/mcp", any(reserved)),
    };
    let router = router
        .fallback(dispatch::plugin_route)
        // Inner to outer: the rate limit sees the principal auth found.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::layer,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), auth::layer))
        .merge(host)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            hardening::layer,
        ));
    // Preflights are answered here, before authentication: browsers send
    // them without credentials.
    let router = match state.cors.layer() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let router = router.with_state(state);
    // The path is made canonical before the router sees it, so routing,
    // access rules, rate limits and the plugin all read one spelling of it.
    Router::new()
        .fallback_service(
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn(canonical::layer))
                .service(router),
        )
        .layer(middleware::from_fn(request_id::layer))
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
