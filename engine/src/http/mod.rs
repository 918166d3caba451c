//! The HTTP face of the engine. The router reads as a table of contents:
//! host endpoints under the reserved `/_kiln/v1` prefix, GraphQL and MCP,
//! and everything else to the plugins.

pub mod admin;
pub mod admin_guard;
pub mod auth;
pub mod billing;
pub mod canonical;
pub mod config;
pub mod connections;
pub mod dispatch;
pub mod hardening;
pub mod rate_limit;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use futures_util::FutureExt;
use tower::Layer;

use crate::config::{Config, Secret};
use crate::graphql::{self, GraphqlConfig, state::GraphqlState};
use crate::mcp::state::McpState;
use crate::registry::Registry;
use crate::request::error::ApiError;
use crate::request::transport::Transport;
use crate::store::Database;
use crate::store::cache::Cache;

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
    #[error("{0}")]
    Billing(String),
}

pub struct AppInner {
    pub registry: Arc<Registry>,
    pub db: Database,
    pub cache: Cache,
    pub admin_token: Option<Secret>,
    /// Reads credentials (API keys, JWTs) into principals.
    pub auth: Arc<crate::identity::authenticator::Authenticator>,
    /// Who may call which route, field, tool and prompt.
    pub access: Arc<crate::identity::access::AccessConfig>,
    /// Body limit, stream places, client IPs and the shutdown signal,
    /// shared with the front doors that hold connections open.
    pub transport: Transport,
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
    /// Crash details in answers (`kiln serve --dev`).
    pub verbose_errors: bool,
    /// GraphQL's own state, for its routes.
    pub graphql: GraphqlState,
    /// MCP's own state, for its route, unless `mcp.enabled` is off.
    pub mcp: Option<McpState>,
    /// Every plugin file's call counters (an observer of every call).
    pub calls: Arc<crate::runtime::stats::CallStats>,
    /// Prices, holds and the ledger.
    pub billing: Arc<crate::billing::Billing>,
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
        let transport = Transport {
            max_request_body: http.max_request_body(),
            streams: crate::streams::limits::StreamSlots::new(
                config.section::<crate::streams::limits::StreamLimits>(),
            ),
            clients: rate_limiter.client_ips().clone(),
            shutdown: shutdown.clone(),
        };
        let billing = crate::billing::Billing::start(
            crate::store::ledger::LedgerStore::new(db.clone()),
            config.section::<crate::billing::BillingConfig>(),
            redis(),
            shutdown.clone(),
        )
        .map_err(StateError::Billing)?;
        let mcp = mcp_config.enabled.then(|| {
            Arc::new(crate::mcp::state::Shared {
                mcp: crate::mcp::service(
                    registry.clone(),
                    access.clone(),
                    billing.clone(),
                    &mcp_config,
                    http.max_request_body(),
                ),
                access: access.clone(),
                transport: transport.clone(),
            })
        });
        let keys = crate::identity::api_keys::ApiKeys::new(
            crate::store::api_keys::KeyStore::new(db.clone()),
            std::time::Duration::from_millis(config.admin.key_cache_ttl_ms),
        );
        let revocations = crate::identity::revocations::Revocations::start(keys.clone(), redis())
            .map_err(StateError::Revocations)?;
        let audit = crate::store::audit::AuditLog::new(db.clone());
        let auth = Arc::new(
            crate::identity::authenticator::Authenticator::new(
                &config.section::<crate::identity::config::IdentityConfig>(),
                keys,
                registry.clone(),
            )
            .map_err(StateError::Identity)?,
        );
        let graphql = Arc::new(crate::graphql::state::Shared {
            registry: registry.clone(),
            config: config.section::<GraphqlConfig>(),
            access: access.clone(),
            auth: auth.clone(),
            transport: transport.clone(),
            billing: billing.clone(),
        });
        Ok(AppState(Arc::new(AppInner {
            registry,
            db,
            cache,
            admin_token: config.admin.token.clone(),
            auth,
            access,
            transport,
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
            verbose_errors: config.verbose_errors,
            graphql,
            mcp,
            calls,
            billing,
        })))
    }
}

/// The engine's HTTP service, in the order a request meets it: its id and
/// its path in canonical form (so routing, access rules, rate limits and
/// the plugin all read one spelling of it), CORS (preflights are answered
/// before authentication: browsers send them without credentials), the
/// header limit, time limit and security headers; then the host's own
/// `/_kiln` endpoints, which check their own credentials, or
/// authentication, the rate limit and the router of the front doors and
/// plugins.
///
/// A service of its own rather than `Router::layer` middleware: a layer
/// wraps every route and axum clones each route's boxed, layered service
/// per call, so these steps run once per request, as plain async calls,
/// before a single route lookup.
#[derive(Clone)]
pub struct Front {
    steps: Steps,
    cors: Option<tower_http::cors::Cors<Steps>>,
}

/// What follows CORS, as a service CORS can wrap.
#[derive(Clone)]
struct Steps {
    app: AppState,
    host: Router,
    plugins: Router,
}

impl Steps {
    async fn run(self, request: Request) -> axum::response::Response {
        let Steps { app, host, plugins } = self;
        hardening::around(&app, request, async |request| {
            if is_host_path(request.uri().path()) {
                return route(host, request).await;
            }
            auth::around(&app, request, async |request| {
                rate_limit::around(&app, request, |request| route(plugins, request)).await
            })
            .await
        })
        .await
    }
}

/// `/_kiln` and everything under it: answered by the host, never by a
/// plugin (the path is canonical by now).
fn is_host_path(path: &str) -> bool {
    path.strip_prefix("/_kiln")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

async fn route(router: Router, request: Request) -> axum::response::Response {
    match tower::ServiceExt::oneshot(router, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

type Responding = futures_util::future::BoxFuture<
    'static,
    Result<axum::response::Response, std::convert::Infallible>,
>;

impl tower::Service<Request> for Steps {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Responding;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Box::pin(self.clone().run(request).map(Ok))
    }
}

impl tower::Service<Request> for Front {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Responding;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let front = self.clone();
        Box::pin(async move {
            Ok(crate::request::id::with_id(request, async |mut request| {
                if let Err(refused) = canonical::canonicalize(&mut request) {
                    return *refused;
                }
                match front.cors {
                    Some(cors) => match tower::ServiceExt::oneshot(cors, request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => front.steps.run(request).await,
                }
            })
            .await)
        })
    }
}

pub fn router(state: AppState) -> Front {
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
            "/billing/accounts",
            get(billing::accounts).post(billing::open_account),
        )
        .route("/billing/accounts/{account}", get(billing::account))
        .route(
            "/billing/accounts/{account}/credit",
            axum::routing::post(billing::credit),
        )
        .route(
            "/billing/accounts/{account}/debit",
            axum::routing::post(billing::debit),
        )
        .route("/billing/accounts/{account}/entries", get(billing::entries))
        .route("/billing/settlements", get(billing::settlements))
        .route("/billing/settle", axum::routing::post(billing::settle_now))
        .route(
            "/plugin-names/{name}",
            axum::routing::delete(admin::release_plugin_name),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    let host = Router::new()
        .route("/_kiln/v1/health", get(admin::health))
        .route("/_kiln/v1/billing/me", get(billing::me))
        .nest("/_kiln/v1/admin", admin)
        .route("/_kiln", any(reserved))
        .route("/_kiln/{*rest}", any(reserved));
    // Each front door mounts its own routes with its own state.
    let plugins = Router::new()
        .merge(graphql::state::router(state.graphql.clone()))
        .route("/graphql/{*rest}", any(reserved))
        .route("/mcp/{*rest}", any(reserved));
    let plugins = match &state.mcp {
        Some(mcp) => plugins.merge(crate::mcp::state::router(mcp.clone())),
        None => plugins.route("/mcp", any(reserved)),
    };
    let plugins = plugins.fallback(dispatch::plugin_route);
    let steps = Steps {
        app: state.clone(),
        host: host.with_state(state.clone()),
        plugins: plugins.with_state(state.clone()),
    };
    Front {
        cors: state.cors.layer().map(|cors| cors.layer(steps.clone())),
        steps,
    }
}

async fn reserved(request: Request) -> axum::response::Response {
    let id = request
        .extensions()
        .get::<crate::request::id::RequestId>()
        .map(|r| r.0.to_string());
    let mut e = ApiError::not_found(request.uri().path());
    e.request_id = id;
    e.into_response()
}
