//! One typed configuration: built-in defaults, then the TOML file, then
//! `KILN_*` environment variables, then command-line flags. Every value is
//! checked once, here, with an error that names the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?} is invalid: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
    #[error("config value {key} is invalid: {message}")]
    Invalid { key: String, message: String },
}

/// The engine configuration (`kiln.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds (`KILN_LISTEN`).
    pub listen: SocketAddr,
    /// Directory watched for `*.wasm` plugins (`KILN_PLUGINS_DIR`).
    pub plugins_dir: PathBuf,
    /// Directory for engine data: the compiled-component cache, later the
    /// SQLite database (`KILN_DATA_DIR`).
    pub data_dir: PathBuf,
    pub admin: AdminConfig,
    /// Credentials the engine accepts (API keys, a JWT issuer).
    pub identity: crate::identity::config::IdentityConfig,
    /// Who may call what: `default` and `[[access.rules]]`.
    pub access: crate::identity::access::AccessConfig,
    /// Token buckets per principal or client IP, per group of paths.
    pub rate_limits: Vec<crate::http::rate_limit::RateLimitGroup>,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub redis: RedisConfig,
    pub http: HttpConfig,
    pub graphql: GraphqlConfig,
    pub mcp: McpConfig,
    pub pubsub: PubsubConfig,
    /// WebSockets, event streams and subscriptions, bounded.
    pub streams: crate::streams::limits::StreamLimits,
    pub runtime: RuntimeConfig,
    /// Limits for every plugin unless its own file or `[plugins.<name>]`
    /// says otherwise, and the ceilings a plugin's own file may not raise.
    pub limits: PartialLimits,
    /// `allowed_hosts` here is the ceiling of the hosts a plugin's own file
    /// may ask for (unset: no ceiling). It lets no plugin reach anything by
    /// itself.
    pub outbound: OutboundSettings,
    /// Per-plugin overrides, keyed by the plugin file's stem (`orders` for
    /// `orders.wasm`). These win over the plugin's own `<name>.toml` and are
    /// not held to the ceilings: the operator decides.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Plugin errors in full in answers (a crash's panic message), not
    /// only in the log: set by `kiln serve --dev`, never by a file.
    #[serde(skip)]
    pub verbose_errors: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugins_dir: PathBuf::from("plugins"),
            data_dir: PathBuf::from(".kiln"),
            admin: AdminConfig::default(),
            identity: Default::default(),
            access: Default::default(),
            rate_limits: Vec::new(),
            database: DatabaseConfig::default(),
            cache: CacheConfig::default(),
            redis: RedisConfig::default(),
            http: HttpConfig::default(),
            graphql: GraphqlConfig::default(),
            mcp: McpConfig::default(),
            pubsub: PubsubConfig::default(),
            streams: Default::default(),
            runtime: RuntimeConfig::default(),
            limits: PartialLimits::default(),
            outbound: OutboundSettings::default(),
            plugins: BTreeMap::new(),
            verbose_errors: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token for `/_kiln/v1/admin/...` (`KILN_ADMIN_TOKEN`), beside API
    /// keys with the `admin` role. With neither, the admin API answers 401
    /// to everyone.
    pub token: Option<Secret>,
    /// How long a checked API key is trusted before it is read again
    /// (revoking on this engine takes effect at once).
    pub key_cache_ttl_ms: u64,
    /// Requests to `/_kiln/v1/admin/*` per client IP, on this engine.
    pub rate_limit: AdminRateLimit,
    /// Failed admin authentications per client IP before it is throttled.
    pub auth_failures: AdminAuthFailures,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            key_cache_ttl_ms: 300_000,
            rate_limit: AdminRateLimit::default(),
            auth_failures: AdminAuthFailures::default(),
        }
    }
}

/// `[admin.rate_limit]`: a token bucket per client IP for the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminRateLimit {
    /// Tokens added per window.
    pub requests: u32,
    pub window_s: u32,
    /// The most a bucket holds.
    pub burst: u32,
}

impl Default for AdminRateLimit {
    fn default() -> Self {
        AdminRateLimit {
            requests: 60,
            window_s: 60,
            burst: 20,
        }
    }
}

/// `[admin.auth_failures]`: after `max` failed admin authentications from
/// one client IP within `window_s`, its admin requests get 429 until the
/// window (counted from its first failure) ends. Each of those `max`
/// failures gets an audit row, the throttling one summary row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminAuthFailures {
    pub max: u32,
    pub window_s: u32,
}

impl Default for AdminAuthFailures {
    fn default() -> Self {
        AdminAuthFailures {
            max: 5,
            window_s: 60,
        }
    }
}

/// The engine's database and its connection pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB` (`KILN_DATABASE_URL`).
    /// Default: the SQLite file `kiln.db` in the data directory.
    pub url: Option<Secret>,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a caller waits for a free connection.
    pub acquire_timeout_ms: u64,
    /// Idle connections above `min_connections` close after this (0 = never).
    pub idle_timeout_ms: u64,
    /// Connections are replaced after this age (0 = never).
    pub max_lifetime_ms: u64,
    /// Check a connection is alive before handing it out.
    pub test_before_acquire: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout_ms: 5_000,
            idle_timeout_ms: 600_000,
            max_lifetime_ms: 1_800_000,
            test_before_acquire: true,
        }
    }
}

impl DatabaseConfig {
    /// The URL to connect to.
    pub fn url(&self, data_dir: &Path) -> String {
        match &self.url {
            Some(url) => url.expose().to_string(),
            None => format!("sqlite://{}", data_dir.join("kiln.db").display()),
        }
    }
}

/// The MCP endpoint (`/mcp`, Streamable HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve MCP at `/mcp`. When off, `/mcp` answers 404.
    pub enabled: bool,
    /// `Host` header values accepted at `/mcp`, as host names or
    /// `host:port`: the DNS-rebinding guard. The default admits loopback
    /// names only; a public deployment lists its own names here. `["*"]`
    /// admits any host (behind a proxy that checks it).
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`, `:*` for any port) allowed
    /// at `/mcp`. A request carrying any other `Origin` gets 403; requests
    /// without one (non-browser clients) pass. The default admits pages
    /// served from loopback (a local MCP inspector), nothing else.
    pub allowed_origins: Vec<String>,
    /// A client of the session-based protocol versions (2025-06-18,
    /// 2025-11-25) that stays silent this long loses its session.
    pub session_idle_timeout_ms: u64,
    /// Interval of keep-alive comments on open event streams (0 = none).
    pub sse_keep_alive_ms: u64,
    /// Sessions open at once, all clients together; past it `initialize`
    /// gets 503.
    pub max_sessions: usize,
    /// Sessions one client (its principal, or its IP when anonymous) holds
    /// at once; past it `initialize` gets 429.
    pub max_sessions_per_client: usize,
    /// New sessions one client may open per minute; past it 429.
    pub sessions_per_minute: u32,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: true,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .flat_map(|h| [format!("http://{h}:*"), format!("https://{h}:*")])
                .collect(),
            session_idle_timeout_ms: 300_000,
            sse_keep_alive_ms: 15_000,
            max_sessions: 2_000,
            max_sessions_per_client: 50,
            sessions_per_minute: 60,
        }
    }
}

/// The GraphQL endpoint (`/graphql`, `/graphql/ws`, `/graphql/stream`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    /// Deepest selection set a query may have.
    pub max_depth: usize,
    /// Most fields (counting nested ones) a query may select.
    pub max_complexity: usize,
    /// Serve GraphiQL to browsers at `GET /graphql`.
    pub graphiql: bool,
    /// Answer introspection queries (`__schema`, `__type`).
    pub introspection: bool,
    /// A WebSocket client must send `connection_init` within this time.
    pub connection_init_timeout_ms: u64,
    /// Operations (mostly subscriptions) one WebSocket may run at once.
    pub max_operations_per_connection: usize,
    /// Most fields an operation may select once its fragments are
    /// expanded, checked before validation (see `graphql::budget`).
    pub max_fields: usize,
    /// Most plugin calls one query or mutation may make.
    pub max_plugin_calls: usize,
    /// Most errors one answer carries; the last one says how many were left out.
    pub max_errors: usize,
    /// Most directives on one field or fragment.
    pub max_directives: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            max_depth: 32,
            max_complexity: 1_000,
            graphiql: true,
            introspection: true,
            connection_init_timeout_ms: 10_000,
            max_operations_per_connection: 100,
            max_fields: 2_000,
            max_plugin_calls: 200,
            max_errors: 100,
            max_directives: 16,
        }
    }
}

/// The pub/sub broker behind GraphQL subscriptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubsubConfig {
    /// Messages a subscriber may fall behind before it is dropped (with an
    /// error) so that it never slows the publisher or grows memory.
    pub subscriber_buffer: usize,
    /// Largest message a plugin may publish.
    pub max_message: ByteSize,
}

impl Default for PubsubConfig {
    fn default() -> Self {
        PubsubConfig {
            subscriber_buffer: 256,
            max_message: ByteSize(64 << 10),
        }
    }
}

/// The plugin cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Capacity of the in-process cache (keys + values).
    pub max_bytes: ByteSize,
    /// Largest single value.
    pub max_value: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: ByteSize(64 << 20),
            max_value: ByteSize(1 << 20),
        }
    }
}

/// Redis, for scale-out: when `url` is set the plugin cache lives there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` (`KILN_REDIS_URL`).
    pub url: Option<Secret>,
    pub connect_timeout_ms: u64,
    /// A command without an answer in this time fails (the request gets 503).
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            connect_timeout_ms: 1_000,
            response_timeout_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted; larger → 413.
    pub max_request_body: ByteSize,
    /// Largest response body a plugin may return; larger → 500 naming the plugin.
    pub max_response_body: ByteSize,
    /// Largest total size of a request's headers; larger → 431.
    pub max_header_bytes: ByteSize,
    /// A request whose response has not started by then gets 504.
    pub request_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C: how long requests in flight get to finish
    /// (subscriptions and event streams are ended at once) before the
    /// connections still open are cut.
    pub shutdown_grace_ms: u64,
    /// Send `Strict-Transport-Security` (set when clients reach the engine
    /// over HTTPS, through a TLS-terminating proxy).
    pub hsts: bool,
    /// Cross-origin calls from browsers; none unless origins are listed.
    pub cors: crate::http::hardening::CorsConfig,
    /// The header that holds the client IP (`x-forwarded-for`) when a
    /// proxy in front sets it; otherwise the socket's peer address.
    pub client_ip_header: Option<String>,
    /// A client must send a request's headers within this time, counted
    /// from the connection's start or, on HTTP/1.1 keep-alive, from the end
    /// of the previous response (so it is also HTTP/1.1's idle limit).
    pub header_read_timeout_ms: u64,
    /// A connection without a request in flight for this long is closed
    /// (HTTP/2 connections; HTTP/1.1 ones meet the header timeout first).
    pub idle_timeout_ms: u64,
    /// Connections open at once. At the limit, the connection idle the
    /// longest is closed to make room; when none is idle the new one gets
    /// 503. Unset: three quarters of the open-file limit, at most 10,000.
    pub max_connections: Option<usize>,
    /// Requests one HTTP/2 connection may run at once.
    pub max_streams_per_connection: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_request_body: ByteSize(1024 * 1024),
            max_response_body: ByteSize(8 * 1024 * 1024),
            max_header_bytes: ByteSize(32 * 1024),
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            hsts: false,
            cors: Default::default(),
            client_ip_header: None,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: None,
            max_streams_per_connection: 100,
        }
    }
}

/// How CPU use of a plugin call is bounded. Compiled code differs between the
/// two, so changing it recompiles every plugin (the cache keys on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuLimit {
    /// Count instructions: deterministic, the `fuel` limit applies.
    Fuel,
    /// Only the wall-clock `timeout_ms` applies (slightly faster guests).
    Epoch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub cpu_limit: CpuLimit,
    /// How often the engine's clock ticks: the granularity of timeouts and of
    /// the cooperative yields that keep a busy guest from hogging a thread.
    pub epoch_tick_ms: u64,
    /// Instances alive at once across all plugins (pooling allocator slots).
    pub max_instances: u32,
    /// The largest memory any plugin may be given (each pool slot is this big).
    pub max_memory: ByteSize,
    /// Keep compiled components on disk.
    pub compile_cache: bool,
    /// Compile one component on every core (at the lowest CPU priority,
    /// so requests come first), instead of on one.
    pub parallel_compilation: bool,
    /// Where (default `<data_dir>/cache`). Engines with different settings
    /// may share one: entries are keyed by the engine's compatibility hash.
    pub cache_dir: Option<PathBuf>,
    /// Quiet time after the last file event before plugins are reloaded.
    pub reload_debounce_ms: u64,
    /// Linear memory kept resident per pool slot and reset with memset rather
    /// than returned to the kernel: the main cost of instance-per-call.
    pub memory_keep_resident: ByteSize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cpu_limit: CpuLimit::Fuel,
            epoch_tick_ms: 5,
            max_instances: 1000,
            max_memory: ByteSize(256 * 1024 * 1024),
            compile_cache: true,
            parallel_compilation: true,
            cache_dir: None,
            reload_debounce_ms: 150,
            memory_keep_resident: ByteSize(2 * 1024 * 1024),
        }
    }
}

/// Per-plugin resource limits, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Instructions per call (with `cpu_limit = "fuel"`).
    pub fuel: u64,
    /// Wall-clock time per call.
    pub timeout_ms: u64,
    /// Linear memory per instance, in bytes.
    pub memory: u64,
    /// Calls running at once.
    pub max_concurrency: u32,
    /// Calls waiting for a slot; one more → 503.
    pub queue_size: u32,
    /// How long a call may wait for a slot → 503.
    pub queue_timeout_ms: u64,
    /// Whether a call gets a fresh instance or reuses a warm one.
    pub instances: InstanceReuse,
    /// Warm instances kept idle per plugin (with `instances = "warm"`).
    pub warm_instances: u32,
    /// Calls one warm instance serves before it is replaced.
    pub max_uses: u32,
    /// How long a warm instance may wait for a call before it is released;
    /// 0: never.
    pub idle_timeout_ms: u64,
}

/// One key of a plugin's own `[limits]` that asks more than the engine's
/// `[limits]` allows, with both values as the message shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverCeiling {
    pub key: &'static str,
    pub asked: String,
    pub ceiling: String,
}

/// How instances are given to calls (`limits.instances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceReuse {
    /// Warm for plugins whose language runtime makes a fresh instance
    /// expensive (JavaScript, Python), fresh for the rest.
    Auto,
    /// A bounded pool of instances reused across calls; one that trapped or
    /// hit a limit is discarded. Module state survives between calls.
    Warm,
    /// A new instance for every call: nothing survives a call.
    Fresh,
}

impl InstanceReuse {
    /// The name as written in TOML.
    pub fn name(self) -> &'static str {
        match self {
            InstanceReuse::Auto => "auto",
            InstanceReuse::Warm => "warm",
            InstanceReuse::Fresh => "fresh",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 2_000_000_000,
            timeout_ms: 10_000,
            memory: 64 * 1024 * 1024,
            max_concurrency: 64,
            queue_size: 256,
            queue_timeout_ms: 2_000,
            instances: InstanceReuse::Auto,
            warm_instances: 16,
            max_uses: 1_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// Limits as written in a file: every field optional, layered over defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialLimits {
    pub fuel: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub memory: Option<ByteSize>,
    pub max_concurrency: Option<u32>,
    pub queue_size: Option<u32>,
    pub queue_timeout_ms: Option<u64>,
    pub instances: Option<InstanceReuse>,
    pub warm_instances: Option<u32>,
    pub max_uses: Option<u32>,
    pub idle_timeout_ms: Option<u64>,
}

impl PartialLimits {
    /// Layers `over` on top of `self` (its values win).
    pub fn overlay(&mut self, over: &PartialLimits) {
        self.fuel = over.fuel.or(self.fuel);
        self.timeout_ms = over.timeout_ms.or(self.timeout_ms);
        self.memory = over.memory.or(self.memory);
        self.max_concurrency = over.max_concurrency.or(self.max_concurrency);
        self.queue_size = over.queue_size.or(self.queue_size);
        self.queue_timeout_ms = over.queue_timeout_ms.or(self.queue_timeout_ms);
        self.instances = over.instances.or(self.instances);
        self.warm_instances = over.warm_instances.or(self.warm_instances);
        self.max_uses = over.max_uses.or(self.max_uses);
        self.idle_timeout_ms = over.idle_timeout_ms.or(self.idle_timeout_ms);
    }

    /// These limits without the keys `over` sets: what of `self` still
    /// counts after `self.overlay(over)`.
    pub fn without(&self, over: &PartialLimits) -> PartialLimits {
        fn keep<T: Copy>(mine: Option<T>, theirs: Option<T>) -> Option<T> {
            if theirs.is_some() { None } else { mine }
        }
        PartialLimits {
            fuel: keep(self.fuel, over.fuel),
            timeout_ms: keep(self.timeout_ms, over.timeout_ms),
            memory: keep(self.memory, over.memory),
            max_concurrency: keep(self.max_concurrency, over.max_concurrency),
            queue_size: keep(self.queue_size, over.queue_size),
            queue_timeout_ms: keep(self.queue_timeout_ms, over.queue_timeout_ms),
            instances: keep(self.instances, over.instances),
            warm_instances: keep(self.warm_instances, over.warm_instances),
            max_uses: keep(self.max_uses, over.max_uses),
            idle_timeout_ms: keep(self.idle_timeout_ms, over.idle_timeout_ms),
        }
    }

    /// The keys of these limits (a plugin's own file asks them) that would
    /// raise `ceiling` (the engine-wide limits), in key order. Lower or
    /// equal values are fine.
    pub fn above(&self, ceiling: &Limits) -> Vec<OverCeiling> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, asked: Option<u64>, max: u64| {
            if let Some(asked) = asked
                && asked > max
            {
                out.push(OverCeiling {
                    key,
                    asked: asked.to_string(),
                    ceiling: max.to_string(),
                });
            }
        };
        check("fuel", self.fuel, ceiling.fuel);
        check("timeout_ms", self.timeout_ms, ceiling.timeout_ms);
        check(
            "max_concurrency",
            self.max_concurrency.map(u64::from),
            ceiling.max_concurrency.into(),
        );
        check(
            "queue_size",
            self.queue_size.map(u64::from),
            ceiling.queue_size.into(),
        );
        check(
            "queue_timeout_ms",
            self.queue_timeout_ms,
            ceiling.queue_timeout_ms,
        );
        check(
            "warm_instances",
            self.warm_instances.map(u64::from),
            ceiling.warm_instances.into(),
        );
        check(
            "max_uses",
            self.max_uses.map(u64::from),
            ceiling.max_uses.into(),
        );
        // Sizes read better with their unit, as they are usually written.
        if let Some(asked) = self.memory
            && asked.0 > ceiling.memory
        {
            out.push(OverCeiling {
                key: "memory",
                asked: format!("\"{asked}\""),
                ceiling: format!("\"{}\"", ByteSize(ceiling.memory)),
            });
        }
        // 0 means "never release", the longest wait there is.
        if let Some(asked) = self.idle_timeout_ms
            && ceiling.idle_timeout_ms != 0
            && (asked == 0 || asked > ceiling.idle_timeout_ms)
        {
            out.push(OverCeiling {
                key: "idle_timeout_ms",
                asked: if asked == 0 {
                    "0 (never)".into()
                } else {
                    asked.to_string()
                },
                ceiling: ceiling.idle_timeout_ms.to_string(),
            });
        }
        // An operator who wants nothing to survive a call set "fresh";
        // "auto" would be warm for a JavaScript or Python component.
        if ceiling.instances == InstanceReuse::Fresh
            && let Some(asked @ (InstanceReuse::Warm | InstanceReuse::Auto)) = self.instances
        {
            out.push(OverCeiling {
                key: "instances",
                asked: format!("\"{}\"", asked.name()),
                ceiling: "\"fresh\"".into(),
            });
        }
        out
    }

    pub fn apply_to(&self, limits: &mut Limits) {
        let PartialLimits {
            fuel,
            timeout_ms,
            memory,
            max_concurrency,
            queue_size,
            queue_timeout_ms,
            instances,
            warm_instances,
            max_uses,
            idle_timeout_ms,
        } = self;
        if let Some(v) = fuel {
            limits.fuel = *v;
        }
        if let Some(v) = timeout_ms {
            limits.timeout_ms = *v;
        }
        if let Some(v) = memory {
            limits.memory = v.0;
        }
        if let Some(v) = max_concurrency {
            limits.max_concurrency = *v;
        }
        if let Some(v) = queue_size {
            limits.queue_size = *v;
        }
        if let Some(v) = queue_timeout_ms {
            limits.queue_timeout_ms = *v;
        }
        if let Some(v) = instances {
            limits.instances = *v;
        }
        if let Some(v) = warm_instances {
            limits.warm_instances = *v;
        }
        if let Some(v) = max_uses {
            limits.max_uses = *v;
        }
        if let Some(v) = idle_timeout_ms {
            limits.idle_timeout_ms = *v;
        }
    }
}

impl Limits {
    /// Checks resolved limits against the engine's. `source` names where they
    /// came from, for the error message.
    pub fn validate(&self, runtime: &RuntimeConfig, source: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError::Invalid {
            key: format!("{source}: limits.{field}"),
            message,
        };
        if self.fuel == 0 {
            return Err(bad("fuel", "must be greater than 0".into()));
        }
        if self.timeout_ms == 0 {
            return Err(bad("timeout_ms", "must be greater than 0".into()));
        }
        if self.memory < 64 * 1024 {
            return Err(bad(
                "memory",
                "must be at least 64KiB (one wasm page)".into(),
            ));
        }
        if self.memory > runtime.max_memory.0 {
            return Err(bad(
                "memory",
                format!(
                    "{} exceeds runtime.max_memory ({}); raise runtime.max_memory",
                    ByteSize(self.memory),
                    runtime.max_memory
                ),
            ));
        }
        if self.max_concurrency == 0 {
            return Err(bad("max_concurrency", "must be at least 1".into()));
        }
        if self.max_concurrency > runtime.max_instances {
            return Err(bad(
                "max_concurrency",
                format!("exceeds runtime.max_instances ({})", runtime.max_instances),
            ));
        }
        if self.warm_instances > runtime.max_instances {
            return Err(bad(
                "warm_instances",
                format!("exceeds runtime.max_instances ({})", runtime.max_instances),
            ));
        }
        if self.max_uses == 0 {
            return Err(bad("max_uses", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Settings for one plugin, from `<name>.toml` beside the wasm or from
/// `[plugins.<name>]` in the engine config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    pub limits: PartialLimits,
    /// Plain settings the plugin reads through the `config` interface.
    pub config: BTreeMap<String, String>,
    /// Secret name → environment variable holding its value.
    pub secrets: BTreeMap<String, String>,
    /// Where the plugin may send HTTP requests.
    pub outbound: OutboundSettings,
}

/// `[outbound]`: the hosts a plugin may call (see `host::outbound` for the
/// entry syntax). Unset or empty: none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    pub allowed_hosts: Option<Vec<String>>,
}

impl PluginSettings {
    /// Parses a plugin's `<name>.toml`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Layers `over` on top of `self` (its values win).
    pub fn overlay(&mut self, over: &PluginSettings) {
        self.limits.overlay(&over.limits);
        self.config
            .extend(over.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.secrets
            .extend(over.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        // The operator's list replaces the plugin's own, never widens it.
        if over.outbound.allowed_hosts.is_some() {
            self.outbound.allowed_hosts = over.outbound.allowed_hosts.clone();
        }
    }
}

/// `name` as a TOML key: bare when it can be, quoted otherwise, so that a
/// message's `[plugins.<name>...]` can be pasted into the config.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

/// A value that must never be printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A size in bytes, written as an integer or as `"512KiB"`, `"8MiB"`, `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        if digits.is_empty() {
            return Err(format!(
                "{s:?} is not a size; write e.g. 65536, \"64KiB\" or \"8MiB\""
            ));
        }
        let n: u64 = digits.parse().map_err(|_| format!("{s:?} is too large"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} in {s:?}; use B, KB, KiB, MB, MiB, GB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", n >> 30)
        } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Config {
    /// Reads `path` (when given) over the defaults, then applies `KILN_*`
    /// variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::parse(path, &text)?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("KILN_LISTEN") {
            self.listen = v.parse().map_err(|e| ConfigError::Env {
                var: "KILN_LISTEN",
                value: v.clone(),
                message: format!("{e}; expected e.g. 127.0.0.1:8080"),
            })?;
        }
        if let Some(v) = env("KILN_PLUGINS_DIR") {
            self.plugins_dir = PathBuf::from(v);
        }
        if let Some(v) = env("KILN_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("KILN_ADMIN_TOKEN") {
            self.admin.token = Some(Secret(v));
        }
        if let Some(v) = env("KILN_JWT_SECRET") {
            self.identity
                .jwt
                .get_or_insert_with(Default::default)
                .secret = Some(Secret(v));
        }
        if let Some(v) = env("KILN_DATABASE_URL") {
            self.database.url = Some(Secret(v));
        }
        if let Some(v) = env("KILN_REDIS_URL") {
            self.redis.url = Some(Secret(v));
        }
        Ok(())
    }

    /// Checks everything that can be checked before start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.to_string(),
            message: message.to_string(),
        };
        if let Some(token) = &self.admin.token
            && token.0.len() < 16
        {
            return Err(invalid(
                "admin.token",
                "must be at least 16 characters; generate one with `openssl rand -hex 32`",
            ));
        }
        if let Some(jwt) = &self.identity.jwt {
            jwt.validate().map_err(|m| invalid("identity.jwt", &m))?;
        }
        self.access.validate().map_err(|m| invalid("access", &m))?;
        self.streams
            .validate()
            .map_err(|m| invalid("streams", &m))?;
        if self.pubsub.subscriber_buffer == 0 || self.pubsub.subscriber_buffer > 65_536 {
            return Err(invalid(
                "pubsub.subscriber_buffer",
                "must be between 1 and 65536",
            ));
        }
        if self.pubsub.max_message.0 == 0 || self.pubsub.max_message.0 > 16 << 20 {
            return Err(invalid(
                "pubsub.max_message",
                "must be between 1 byte and 16MiB",
            ));
        }
        if self.mcp.allowed_hosts.is_empty() {
            return Err(invalid(
                "mcp.allowed_hosts",
                "must name at least one host (or be [\"*\"] to admit any)",
            ));
        }
        if let Some(bad) = self
            .mcp
            .allowed_origins
            .iter()
            .find(|o| *o != "null" && !o.starts_with("http://") && !o.starts_with("https://"))
        {
            return Err(invalid(
                "mcp.allowed_origins",
                &format!("{bad:?} must start with http:// or https:// (or be \"null\")"),
            ));
        }
        for (key, value) in [
            ("mcp.max_sessions", self.mcp.max_sessions),
            (
                "mcp.max_sessions_per_client",
                self.mcp.max_sessions_per_client,
            ),
            (
                "mcp.sessions_per_minute",
                self.mcp.sessions_per_minute as usize,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.mcp.session_idle_timeout_ms == 0 {
            return Err(invalid(
                "mcp.session_idle_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.graphql.max_depth == 0 || self.graphql.max_complexity == 0 {
            return Err(invalid(
                "graphql.max_depth",
                "graphql.max_depth and graphql.max_complexity must be at least 1",
            ));
        }
        for (key, value) in [
            ("graphql.max_fields", self.graphql.max_fields),
            ("graphql.max_plugin_calls", self.graphql.max_plugin_calls),
            ("graphql.max_errors", self.graphql.max_errors),
            ("graphql.max_directives", self.graphql.max_directives),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let db = &self.database;
        if db.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if db.min_connections > db.max_connections {
            return Err(invalid(
                "database.min_connections",
                "must not exceed max_connections",
            ));
        }
        if db.acquire_timeout_ms == 0 {
            return Err(invalid(
                "database.acquire_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.cache.max_value.0 == 0 || self.cache.max_value > self.cache.max_bytes {
            return Err(invalid(
                "cache.max_value",
                "must be between 1 byte and cache.max_bytes",
            ));
        }
        if self.redis.connect_timeout_ms == 0 || self.redis.response_timeout_ms == 0 {
            return Err(invalid(
                "redis",
                "connect_timeout_ms and response_timeout_ms must be greater than 0",
            ));
        }
        if self.runtime.epoch_tick_ms == 0 || self.runtime.epoch_tick_ms > 1000 {
            return Err(invalid(
                "runtime.epoch_tick_ms",
                "must be between 1 and 1000",
            ));
        }
        if self.runtime.max_instances == 0 {
            return Err(invalid("runtime.max_instances", "must be at least 1"));
        }
        if self.runtime.max_memory.0 < 64 * 1024 || self.runtime.max_memory.0 > 4 << 30 {
            return Err(invalid(
                "runtime.max_memory",
                "must be between 64KiB and 4GiB",
            ));
        }
        if self.http.max_header_bytes.0 < 1024 || self.http.max_header_bytes.0 > 1 << 20 {
            return Err(invalid(
                "http.max_header_bytes",
                "must be between 1KiB and 1MiB",
            ));
        }
        for (key, value) in [
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            ("http.idle_timeout_ms", self.http.idle_timeout_ms),
        ] {
            if value < 100 {
                return Err(invalid(key, "must be at least 100"));
            }
        }
        if self.http.max_connections == Some(0) {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if self.http.max_streams_per_connection == 0 {
            return Err(invalid(
                "http.max_streams_per_connection",
                "must be at least 1",
            ));
        }
        if self.http.request_timeout_ms < 100 {
            return Err(invalid("http.request_timeout_ms", "must be at least 100"));
        }
        self.http
            .cors
            .validate()
            .map_err(|m| invalid("http.cors", &m))?;
        let admin_limit = &self.admin.rate_limit;
        if admin_limit.requests == 0 || admin_limit.window_s == 0 || admin_limit.burst == 0 {
            return Err(invalid(
                "admin.rate_limit",
                "requests, window_s and burst must be at least 1",
            ));
        }
        let failures = &self.admin.auth_failures;
        if !(1..=1000).contains(&failures.max) || !(1..=86_400).contains(&failures.window_s) {
            return Err(invalid(
                "admin.auth_failures",
                "max must be 1-1000 and window_s 1-86400",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for group in &self.rate_limits {
            group.validate().map_err(|m| invalid("rate_limits", &m))?;
            if !names.insert(group.name.as_str()) {
                return Err(invalid(
                    "rate_limits",
                    &format!("two groups are named '{}'", group.name),
                ));
            }
        }
        if self.http.max_request_body.0 > usize::MAX as u64 {
            return Err(invalid("http.max_request_body", "is too large"));
        }
        if let Some(hosts) = &self.outbound.allowed_hosts {
            crate::host::outbound::OutboundPolicy::parse(hosts)
                .map_err(|m| invalid("outbound", &m))?;
        }
        self.default_limits().validate(&self.runtime, "[limits]")?;
        for (name, settings) in &self.plugins {
            let mut limits = self.default_limits();
            settings.limits.apply_to(&mut limits);
            limits.validate(&self.runtime, &format!("[plugins.{name}]"))?;
        }
        Ok(())
    }

    /// Checks a plugin's own settings file (`file`, beside `<stem>.wasm`),
    /// which the plugin's author wrote, against what only the operator may
    /// decide: it may not raise the engine's `[limits]`, ask for hosts
    /// outside `[outbound] allowed_hosts` (when set) or map secrets to
    /// environment variables. Keys the operator's `[plugins.<stem>]` sets
    /// replace the file's, so those are not checked.
    pub fn check_plugin_file(
        &self,
        stem: &str,
        file: &Path,
        own: &PluginSettings,
    ) -> Result<(), String> {
        let file = file.display();
        let key = toml_key(stem);
        if !own.secrets.is_empty() {
            return Err(format!(
                "{file}: [secrets] is not allowed in a plugin's own settings: only the operator \
                 may give a plugin the engine's environment variables; move it to \
                 [plugins.{key}.secrets] in the engine config"
            ));
        }
        let operator = self.plugins.get(stem);
        let asked = match operator {
            Some(over) => own.limits.without(&over.limits),
            None => own.limits.clone(),
        };
        let above = asked.above(&self.default_limits());
        if !above.is_empty() {
            let each: Vec<String> = above
                .iter()
                .map(|o| {
                    format!(
                        "limits.{} = {} exceeds the engine's ceiling {} ([limits] {})",
                        o.key, o.asked, o.ceiling, o.key
                    )
                })
                .collect();
            let it = if above.len() == 1 { "it" } else { "them" };
            return Err(format!(
                "{file}: {}; lower {it}, or raise {it} for this plugin with \
                 [plugins.{key}.limits] in the engine config",
                each.join(", ")
            ));
        }
        let operator_sets_hosts = operator.is_some_and(|o| o.outbound.allowed_hosts.is_some());
        if let (Some(ceiling), Some(asked), false) = (
            &self.outbound.allowed_hosts,
            &own.outbound.allowed_hosts,
            operator_sets_hosts,
        ) {
            let policy = crate::host::outbound::OutboundPolicy::parse(ceiling)
                .map_err(|e| format!("[outbound] in the engine config: {e}"))?;
            let outside = policy
                .uncovered(asked)
                .map_err(|e| format!("{file}: outbound.{e}"))?;
            if !outside.is_empty() {
                return Err(format!(
                    "{file}: outbound.allowed_hosts {outside:?} {} outside the engine's ceiling \
                     {ceiling:?} ([outbound] allowed_hosts); ask only for hosts it covers, or \
                     grant {} for this plugin with [plugins.{key}.outbound] allowed_hosts in the \
                     engine config",
                    if outside.len() == 1 { "is" } else { "are" },
                    if outside.len() == 1 { "it" } else { "them" },
                ));
            }
        }
        Ok(())
    }

    /// Built-in limits with `[limits]` applied.
    pub fn default_limits(&self) -> Limits {
        let mut limits = Limits::default();
        self.limits.apply_to(&mut limits);
        limits
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.runtime
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn byte_sizes_parse_with_units() {
        for (text, n) in [
            ("0", 0),
            ("512", 512),
            ("64KiB", 64 << 10),
            ("64 kib", 64 << 10),
            ("8MiB", 8 << 20),
            ("1MB", 1_000_000),
            ("2GiB", 2 << 30),
            ("3k", 3 << 10),
        ] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(n)), "{text}");
        }
        assert!(ByteSize::parse("MiB").unwrap_err().contains("not a size"));
        assert!(
            ByteSize::parse("5 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(
            ByteSize::parse("99999999999999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn byte_sizes_display_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(8 << 20).to_string(), "8MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(3 << 10).to_string(), "3KiB");
    }

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_refused() {
        let c = Config::parse(
            Path::new("k.toml"),
            r#"
                listen = "0.0.0.0:9000"
                [http]
                max_request_body = "2MiB"
                shutdown_grace_ms = 2500
                [limits]
                timeout_ms = 500
                [plugins.orders.limits]
                memory = "16MiB"
                [plugins.orders.config]
                currency = "EUR"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.http.max_request_body, ByteSize(2 << 20));
        assert_eq!(c.http.shutdown_grace_ms, 2500);
        assert_eq!(Config::default().http.shutdown_grace_ms, 10_000);
        assert_eq!(c.default_limits().timeout_ms, 500);
        assert_eq!(c.plugins["orders"].limits.memory, Some(ByteSize(16 << 20)));
        c.validate().unwrap();

        let err = Config::parse(Path::new("k.toml"), "lisen = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k.toml") && err.contains("lisen"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_reports_bad_values() {
        let env = |k: &str| match k {
            "KILN_LISTEN" => Some("127.0.0.1:7000".to_string()),
            "KILN_ADMIN_TOKEN" => Some("0123456789abcdef0123".to_string()),
            _ => None,
        };
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(
            c.admin.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef0123")
        );
        let bad = |k: &str| (k == "KILN_LISTEN").then(|| "nope".to_string());
        let err = Config::load(None, bad).unwrap_err().to_string();
        assert!(err.contains("KILN_LISTEN"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn limits_are_checked_against_the_runtime() {
        let mut c = Config::load(None, no_env).unwrap();
        c.limits.memory = Some(ByteSize(1 << 30));
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("limits.memory") && err.contains("runtime.max_memory"),
            "{err}"
        );

        let mut c = Config::default();
        c.plugins.insert(
            "x".into(),
            PluginSettings {
                limits: PartialLimits {
                    max_concurrency: Some(0),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("[plugins.x]: limits.max_concurrency"), "{err}");
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        let mut c = Config::default();
        c.admin.token = Some(Secret::new("short"));
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("admin.token")
        );
    }

    /// Limits with only the keys of `toml` (a `[limits]` body) set.
    fn partial(toml: &str) -> PartialLimits {
        PluginSettings::parse(Path::new("p.toml"), &format!("[limits]\n{toml}"))
            .unwrap()
            .limits
    }

    #[test]
    fn a_plugin_may_lower_every_limit_but_raise_none() {
        let ceiling = Limits::default();
        let fresh = Limits {
            instances: InstanceReuse::Fresh,
            ..Limits::default()
        };
        let never_idle = Limits {
            idle_timeout_ms: 0,
            ..Limits::default()
        };
        // (ceiling, what the plugin asks, the key refused with asked and
        // ceiling as shown, or None: accepted)
        /// The refused key, the asked value and the ceiling as shown.
        type Refused<'a> = Option<(&'a str, &'a str, &'a str)>;
        let cases: &[(&Limits, &str, Refused)] = &[
            (
                &ceiling,
                "fuel = 2000000001",
                Some(("fuel", "2000000001", "2000000000")),
            ),
            (&ceiling, "fuel = 2000000000", None),
            (&ceiling, "fuel = 1", None),
            (
                &ceiling,
                "timeout_ms = 10001",
                Some(("timeout_ms", "10001", "10000")),
            ),
            (&ceiling, "timeout_ms = 500", None),
            (
                &ceiling,
                "memory = \"128MiB\"",
                Some(("memory", "\"128MiB\"", "\"64MiB\"")),
            ),
            (
                &ceiling,
                "memory = 67108865",
                Some(("memory", "\"67108865B\"", "\"64MiB\"")),
            ),
            (&ceiling, "memory = \"64MiB\"", None),
            (
                &ceiling,
                "max_concurrency = 65",
                Some(("max_concurrency", "65", "64")),
            ),
            (&ceiling, "max_concurrency = 1", None),
            (
                &ceiling,
                "queue_size = 257",
                Some(("queue_size", "257", "256")),
            ),
            (&ceiling, "queue_size = 0", None),
            (
                &ceiling,
                "queue_timeout_ms = 2001",
                Some(("queue_timeout_ms", "2001", "2000")),
            ),
            (&ceiling, "queue_timeout_ms = 100", None),
            (
                &ceiling,
                "warm_instances = 17",
                Some(("warm_instances", "17", "16")),
            ),
            (&ceiling, "warm_instances = 0", None),
            (
                &ceiling,
                "max_uses = 1001",
                Some(("max_uses", "1001", "1000")),
            ),
            (&ceiling, "max_uses = 3", None),
            (
                &ceiling,
                "idle_timeout_ms = 60001",
                Some(("idle_timeout_ms", "60001", "60000")),
            ),
            // 0 is "never": longer than any non-zero ceiling.
            (
                &ceiling,
                "idle_timeout_ms = 0",
                Some(("idle_timeout_ms", "0 (never)", "60000")),
            ),
            (&ceiling, "idle_timeout_ms = 1500", None),
            (&never_idle, "idle_timeout_ms = 0", None),
            (&never_idle, "idle_timeout_ms = 999999999", None),
            (
                &fresh,
                "instances = \"warm\"",
                Some(("instances", "\"warm\"", "\"fresh\"")),
            ),
            (
                &fresh,
                "instances = \"auto\"",
                Some(("instances", "\"auto\"", "\"fresh\"")),
            ),
            (&fresh, "instances = \"fresh\"", None),
            (&ceiling, "instances = \"warm\"", None),
            (&ceiling, "instances = \"fresh\"", None),
            (&ceiling, "", None),
        ];
        for (ceiling, asked, refused) in cases {
            let above = partial(asked).above(ceiling);
            let got = above
                .iter()
                .map(|o| (o.key, o.asked.as_str(), o.ceiling.as_str()))
                .next();
            assert_eq!(got, *refused, "{asked}");
            assert!(above.len() <= 1, "{asked}: {above:?}");
        }
        // Every key over at once: each is named, in key order.
        let all = partial(
            "fuel = 3000000000\ntimeout_ms = 20000\nmemory = \"1GiB\"\nmax_concurrency = 100\n\
             queue_size = 1000\nqueue_timeout_ms = 5000\nwarm_instances = 50\nmax_uses = 5000\n\
             idle_timeout_ms = 0\ninstances = \"warm\"",
        );
        let keys: Vec<_> = all.above(&fresh).iter().map(|o| o.key).collect();
        assert_eq!(
            keys,
            [
                "fuel",
                "timeout_ms",
                "max_concurrency",
                "queue_size",
                "queue_timeout_ms",
                "warm_instances",
                "max_uses",
                "memory",
                "idle_timeout_ms",
                "instances"
            ]
        );
    }

    fn engine(toml: &str) -> Config {
        let c = Config::parse(Path::new("kiln.toml"), toml).unwrap();
        c.validate().unwrap();
        c
    }

    fn own(toml: &str) -> PluginSettings {
        PluginSettings::parse(Path::new("plugins/x.toml"), toml).unwrap()
    }

    fn check(config: &Config, settings: &str) -> Result<(), String> {
        config.check_plugin_file("x", Path::new("plugins/x.toml"), &own(settings))
    }

    #[test]
    fn a_plugin_file_over_the_ceiling_is_refused_naming_file_key_values_and_the_fix() {
        let c = engine("");
        let err = check(&c, "[limits]\nfuel = 9000000000").unwrap_err();
        assert_eq!(
            err,
            "plugins/x.toml: limits.fuel = 9000000000 exceeds the engine's ceiling 2000000000 \
             ([limits] fuel); lower it, or raise it for this plugin with [plugins.x.limits] in \
             the engine config"
        );
        let err = check(&c, "[limits]\nfuel = 9000000000\ntimeout_ms = 20000").unwrap_err();
        assert!(
            err.contains("limits.fuel = 9000000000")
                && err.contains("limits.timeout_ms = 20000 exceeds the engine's ceiling 10000")
                && err.contains("lower them, or raise them"),
            "{err}"
        );
        // The engine's [limits] is the ceiling, lower or higher than built-in.
        let c = engine("[limits]\ntimeout_ms = 500\nfuel = 9000000000");
        assert!(check(&c, "[limits]\nfuel = 9000000000").is_ok());
        let err = check(&c, "[limits]\ntimeout_ms = 501").unwrap_err();
        assert!(err.contains("ceiling 500 ([limits] timeout_ms)"), "{err}");
        // A stem that is no bare TOML key is quoted in the advice.
        let err = c
            .check_plugin_file(
                "my.api",
                Path::new("p/my.api.toml"),
                &own("[limits]\ntimeout_ms = 501"),
            )
            .unwrap_err();
        assert!(err.contains("[plugins.\"my.api\".limits]"), "{err}");
    }

    #[test]
    fn the_operator_may_grant_beyond_the_ceiling_and_its_keys_replace_the_files() {
        let c = engine(
            "[plugins.x.limits]\nfuel = 9000000000\n[plugins.x.outbound]\nallowed_hosts = [\"evil.test\"]\n[outbound]\nallowed_hosts = [\"*.example.com\"]",
        );
        // The operator's own [plugins.x] passes validation beyond [limits].
        assert_eq!(c.plugins["x"].limits.fuel, Some(9_000_000_000));
        // The file's fuel is replaced by the operator's, so it is not held
        // to the ceiling; its other keys are.
        assert!(check(&c, "[limits]\nfuel = 99999999999").is_ok());
        assert!(check(&c, "[limits]\nfuel = 1\ntimeout_ms = 20000").is_err());
        // Same for outbound: the operator's list replaces the file's.
        assert!(check(&c, "[outbound]\nallowed_hosts = [\"other.test\"]").is_ok());
    }

    #[test]
    fn a_plugin_file_asks_hosts_only_within_the_outbound_ceiling() {
        let hosts = "[outbound]\nallowed_hosts = [\"api.example.com\", \"evil.test\"]";
        // No ceiling: as before, the file decides.
        assert!(check(&engine(""), hosts).is_ok());
        let c = engine("[outbound]\nallowed_hosts = [\"*.example.com\"]");
        let err = check(&c, hosts).unwrap_err();
        assert!(
            err.starts_with("plugins/x.toml: outbound.allowed_hosts [\"evil.test\"] is outside")
                && err.contains("ceiling [\"*.example.com\"] ([outbound] allowed_hosts)")
                && err.contains("[plugins.x.outbound] allowed_hosts"),
            "{err}"
        );
        assert!(!err.contains("api.example.com"), "{err}");
        assert!(check(&c, "[outbound]\nallowed_hosts = [\"api.example.com\"]").is_ok());
        assert!(check(&c, "").is_ok());
        let err = check(&c, "[outbound]\nallowed_hosts = [\"ftp://x\"]").unwrap_err();
        assert!(
            err.contains("plugins/x.toml: outbound.allowed_hosts entry"),
            "{err}"
        );
        // An empty ceiling: plugins may ask for nothing.
        let c = engine("[outbound]\nallowed_hosts = []");
        assert!(check(&c, "[outbound]\nallowed_hosts = [\"a.example.com\"]").is_err());
        // A bad ceiling stops start-up, naming the key.
        let c = Config::parse(Path::new("k.toml"), "[outbound]\nallowed_hosts = [\"*\"]").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("outbound") && err.contains("every host"),
            "{err}"
        );
    }

    #[test]
    fn secrets_in_a_plugin_file_are_refused_and_the_operator_may_grant_them() {
        let c = engine("[plugins.x.secrets]\ntoken = \"X_TOKEN\"");
        let err = check(&c, "[secrets]\ntoken = \"KILN_ADMIN_TOKEN\"").unwrap_err();
        assert!(
            err.starts_with("plugins/x.toml: [secrets] is not allowed")
                && err.contains("move it to [plugins.x.secrets] in the engine config"),
            "{err}"
        );
        assert!(check(&c, "[config]\na = \"1\"").is_ok());
    }

    #[test]
    fn plugin_settings_layer_with_later_values_winning() {
        let mut base = PluginSettings::parse(
            Path::new("p.toml"),
            "[limits]\nfuel = 10\ntimeout_ms = 20\n[config]\na = \"1\"\nb = \"2\"",
        )
        .unwrap();
        let over = PluginSettings::parse(
            Path::new("e.toml"),
            "[limits]\nfuel = 99\n[config]\nb = \"3\"",
        )
        .unwrap();
        base.overlay(&over);
        assert_eq!(base.limits.fuel, Some(99));
        assert_eq!(base.limits.timeout_ms, Some(20));
        assert_eq!(base.config["a"], "1");
        assert_eq!(base.config["b"], "3");
    }
}
