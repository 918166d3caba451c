//! Start-up: check the config, build the runtime, load the plugin directory,
//! watch it, and serve until `shutdown` resolves; then drain: stop
//! accepting, end the streams that never end by themselves, give requests
//! in flight `http.shutdown_grace_ms`, and cut what is still open.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::graphql::{GraphqlConfig, SchemaInputs};
use crate::host::HostServices;
use crate::http::config::HttpConfig;
use crate::http::connections::{self, ConnectionLimits, Connections, raise_open_file_limit};
use crate::http::{AppState, router};
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::store::DatabaseConfig;
use crate::store::cache::{Cache, CacheConfig};
use crate::store::kv::Kv;
use crate::store::sql::SqlService;
use crate::store::{Database, redact};
use crate::streams::Broker;
use crate::streams::broker::PubsubConfig;
use crate::streams::redis_bridge::RedisBridge;
use crate::watcher::{Reloader, watch};

/// Starts the engine ([`start`]) and serves it until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    start(config).await?.serve(shutdown).await
}

/// The engine built and its plugins loaded, not yet listening: `router`
/// answers requests in process (the request-path benchmark drives it
/// without sockets); [`Engine::serve`] puts it on the configured address.
pub struct Engine {
    pub router: crate::http::Front,
    config: Arc<Config>,
    db: Database,
    /// Cancelled at shutdown (`Transport::shutdown`).
    stopping: CancellationToken,
    idle_release: tokio::task::JoinHandle<()>,
    _watch: crate::watcher::WatchGuard,
}

/// Checks the config, opens the database, cache and broker, builds the
/// runtime, loads the plugin directory and watches it.
pub async fn start(config: Config) -> anyhow::Result<Engine> {
    config.validate()?;
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.plugins_dir).with_context(|| {
        format!(
            "cannot create the plugin directory {}",
            config.plugins_dir.display()
        )
    })?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;

    let db = open_database(&config).await?;
    let _checkpoints = tokio::spawn(crate::store::checkpoint::keep_wal_short(db.clone()));
    let kv = Kv::new(db.clone());
    let _sweeper = tokio::spawn(sweep_expired(kv.clone()));
    let cache = open_cache(&config).await?;
    let broker = open_broker(&config)?;
    let services = HostServices {
        kv: Some(kv),
        cache: Some(cache.clone()),
        sql: Some(SqlService::new(db.clone(), &config.data_dir)),
        pubsub: Some(broker.clone()),
    };
    let calls = Arc::new(crate::runtime::stats::CallStats::default());
    let observers = crate::runtime::Observers::new(vec![calls.clone()]);
    let runtime = Arc::new(Runtime::new(&config, services, observers)?);
    let registry = Arc::new(Registry::new());
    let http = config.section::<HttpConfig>();
    let schema_inputs = SchemaInputs::new(
        broker,
        config.section::<GraphqlConfig>(),
        http.max_response_body(),
        Duration::from_millis(http.request_timeout_ms),
    );
    let idle_release = tokio::spawn(release_idle_instances(runtime.clone()));
    let _trim = tokio::spawn(crate::memory::trim_after_releases());
    let names = crate::store::plugin_names::PluginNames::new(db.clone());
    let mut reloader = Reloader::new(
        runtime,
        registry.clone(),
        config.clone(),
        crate::front_door::FrontDoors::new(schema_inputs),
        names,
    );
    reloader.sync().await;
    let _watch = watch(
        reloader,
        Duration::from_millis(config.runtime.reload_debounce_ms),
    )?;
    if config.admin.token.is_none() {
        tracing::warn!("no admin token configured: the admin API answers 401 to every request");
    }

    let stopping = CancellationToken::new();
    let state = AppState::new(
        &config,
        registry,
        db.clone(),
        cache,
        calls,
        stopping.clone(),
    )?;
    Ok(Engine {
        router: router(state),
        config,
        db,
        stopping,
        idle_release,
        _watch,
    })
}

impl Engine {
    /// Serves on `listen` until `shutdown` resolves, then drains.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Engine {
            router,
            config,
            db,
            stopping,
            idle_release,
            _watch,
        } = self;
        let http = config.section::<HttpConfig>();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let open_files = raise_open_file_limit();
        let limits = ConnectionLimits::from_config(&http, open_files);
        tracing::info!(
            open_files = open_files.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            max_connections = limits.max_connections,
            "connection limits"
        );
        tracing::info!(plugins_dir = %config.plugins_dir.display(), "listening on http://{addr}");
        let open = Arc::new(Connections::default());
        // On `stopping`, the accept loop ends (the listener is closed, so new
        // connections are refused) and every connection finishes its requests
        // in flight and closes; the streams that never end by themselves watch
        // the same token.
        let server = tokio::spawn(connections::serve(
            listener,
            router,
            limits,
            open.clone(),
            stopping.clone(),
        ));
        shutdown.await;
        let grace = Duration::from_millis(http.shutdown_grace_ms);
        tracing::info!(
            connections = open.count(),
            grace_ms = http.shutdown_grace_ms,
            "shutting down: no new connections; finishing requests in flight, ending streams"
        );
        stopping.cancel();
        let drained = async {
            let _ = server.await;
            open.all_closed().await;
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            // The connection tasks still running end when the runtime is shut
            // down, after `serve` returns (main bounds that wait).
            tracing::warn!(
                connections = open.count(),
                "shutdown grace period (http.shutdown_grace_ms = {} ms) is over: cutting {} connection(s) still open",
                http.shutdown_grace_ms,
                open.count(),
            );
        }
        // The sweep holds the runtime; stopping it lets the runtime go.
        idle_release.abort();
        // Closing waits for connections a request holds; a request cut above
        // may still hold one until the runtime stops.
        if tokio::time::timeout(Duration::from_secs(2), db.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "the database did not close within 2 s; stopping without waiting for it"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects to the configured database and brings its schema up to date;
/// start-up stops here if either fails.
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    let database = config.section::<DatabaseConfig>();
    let db = Database::connect(&database, &config.data_dir).await?;
    let applied = db.migrate().await?;
    tracing::info!(
        database = %redact(&database.url(&config.data_dir)),
        migrations = applied.len(),
        "database ready"
    );
    Ok(db)
}

/// The plugin cache: Redis when configured, in process otherwise. An
/// unreachable Redis does not stop start-up: cache calls answer
/// `unavailable` until it is back, and the engine reconnects by itself.
async fn open_cache(config: &Config) -> anyhow::Result<Cache> {
    let limits = config.section::<CacheConfig>();
    let Some(url) = &config.redis.url else {
        return Ok(Cache::local(&limits));
    };
    let cache = Cache::redis(&limits, &config.redis, url.expose()).map_err(anyhow::Error::msg)?;
    match cache.ping().await {
        Ok(()) => tracing::info!(redis = %redact(url.expose()), "plugin cache in Redis"),
        Err(e) => {
            tracing::error!(redis = %redact(url.expose()), error = %e, "Redis is not answering; cache calls fail until it does")
        }
    }
    Ok(cache)
}

/// The pub/sub broker, bridged through Redis when it is configured so that
/// subscribers on every engine get what a plugin on any engine publishes.
fn open_broker(config: &Config) -> anyhow::Result<Broker> {
    let pubsub = config.section::<PubsubConfig>();
    let broker = Broker::new(
        pubsub.subscriber_buffer,
        usize::try_from(pubsub.max_message.0).unwrap_or(usize::MAX),
    );
    if let Some(url) = &config.redis.url {
        let bridge =
            RedisBridge::start(&broker, &config.redis, url.expose()).map_err(anyhow::Error::msg)?;
        broker.attach_bridge(bridge);
    }
    Ok(broker)
}

/// Expired key-value entries are invisible at once; this removes them.
async fn sweep_expired(kv: Kv) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        match kv.sweep_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "swept expired key-value entries"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired key-value entries failed"),
        }
    }
}

/// Warm instances nobody took within their plugin's `idle_timeout_ms` give
/// their memory back; checked every second, so a release is at most that late.
async fn release_idle_instances(runtime: Arc<Runtime>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let runtime = runtime.clone();
        // Dropping a store resets its memory slot: work for a blocking thread.
        let sweep = tokio::task::spawn_blocking(move || {
            runtime.release_idle_instances(std::time::Instant::now())
        });
        if let Ok(released @ 1..) = sweep.await {
            tracing::debug!(released, "released idle warm instances");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
