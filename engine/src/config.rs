//! The engine's own configuration and the loader of `kiln.toml`: built-in
//! defaults, then the TOML file, then `KILN_*` environment variables, then
//! command-line flags.
//!
//! This module owns the keys that are the engine's own (where it listens,
//! its directories, the admin API, the runtime and plugin limits, the
//! per-plugin settings, Redis). Every other table belongs to the unit that
//! reads it (`[http]` to `http`, `[mcp]` to `mcp`, …): the unit declares
//! its type, defaults, checks and environment variables as a [`Section`],
//! and this module only finds its table in the file and names the key in
//! errors. `crate::sections` lists the sections and claims them at start.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
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

/// The error of a value that fails its section's checks; `key` is its
/// full dotted name (`mcp.max_sessions`).
pub fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// Refuses the first of `values` (full key, value) below `min`: "must be
/// at least {min}".
pub fn at_least(min: u64, values: &[(&str, u64)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, v)| *v < min) {
        Some((key, _)) => Err(invalid(key, &format!("must be at least {min}"))),
        None => Ok(()),
    }
}

/// Reads one `KILN_*` variable (the process environment, or a test's).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One table of `kiln.toml`, owned by the unit that reads it: its type
/// (with `#[serde(deny_unknown_fields, default)]`), its defaults, the
/// `KILN_*` variables that set its values, and the checks its type alone
/// cannot make.
pub trait Section: DeserializeOwned + Default + Clone + fmt::Debug + Send + Sync + 'static {
    /// The table's name at the top level of `kiln.toml`.
    const KEY: &'static str;

    /// Applies this section's `KILN_*` variables over the file's values.
    fn apply_env(&mut self, _env: Env<'_>) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Checks the values; an error names the full key ([`invalid`]).
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The engine's own keys (`kiln.toml`), and the units' sections once they
/// are claimed ([`Config::claim`], [`Config::section`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds (`KILN_LISTEN`).
    pub listen: SocketAddr,
    /// Directory watched for `*.wasm` plugins (`KILN_PLUGINS_DIR`).
    pub plugins_dir: PathBuf,
    /// Directory for engine data: the compiled-component cache, later the
    /// SQLite database (`KILN_DATA_DIR`).
    pub data_dir: PathBuf,
    pub admin: AdminConfig,
    pub redis: RedisConfig,
    pub runtime: RuntimeConfig,
    /// Limits for every plugin unless its own file or `[plugins.<name>]`
    /// says otherwise, and the ceilings a plugin's own file may not raise.
    pub limits: PartialLimits,
    /// Per-plugin overrides, keyed by the plugin file's stem (`orders` for
    /// `orders.wasm`). These win over the plugin's own `<name>.toml` and are
    /// not held to the ceilings: the operator decides.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Plugin errors in full in answers (a crash's panic message), not
    /// only in the log: set by `kiln serve --dev`, never by a file.
    #[serde(skip)]
    pub verbose_errors: bool,
    /// The units' sections as claimed, and the file they come from.
    #[serde(skip)]
    pub sections: Sections,
}

/// The units' part of the config; read it with [`Config::section`].
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// The file the config was read from, for the units' sections.
    file: Option<Arc<File>>,
    /// In the order they were claimed (the order they are checked in).
    claimed: Vec<Box<dyn Claimed>>,
}

/// A claimed section, its type erased: kept, cloned and checked with the
/// engine's config.
trait Claimed: Any + fmt::Debug + Send + Sync {
    fn key(&self) -> &'static str;
    fn validate(&self) -> Result<(), ConfigError>;
    fn clone_box(&self) -> Box<dyn Claimed>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<S: Section> Claimed for S {
    fn key(&self) -> &'static str {
        S::KEY
    }
    fn validate(&self) -> Result<(), ConfigError> {
        Section::validate(self)
    }
    fn clone_box(&self) -> Box<dyn Claimed> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Clone for Box<dyn Claimed> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A config file as read: its path (for errors), its text (the units'
/// sections are read from it, so their errors point at the line) and its
/// top-level keys.
#[derive(Debug)]
struct File {
    path: PathBuf,
    text: String,
    keys: Vec<String>,
}

/// The engine's own top-level keys.
const OWN_KEYS: &[&str] = &[
    "listen",
    "plugins_dir",
    "data_dir",
    "admin",
    "redis",
    "runtime",
    "limits",
    "plugins",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugins_dir: PathBuf::from("plugins"),
            data_dir: PathBuf::from(".kiln"),
            admin: AdminConfig::default(),
            redis: RedisConfig::default(),
            runtime: RuntimeConfig::default(),
            limits: PartialLimits::default(),
            plugins: BTreeMap::new(),
            verbose_errors: false,
            sections: Sections::default(),
        }
    }
}

/// Deserializes only the table `S::KEY` of a whole file, so an error in it
/// keeps the file's line and column.
struct Pick<S>(Option<S>);

impl<'de, S: Section> Deserialize<'de> for Pick<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Tables<S>(PhantomData<S>);
        impl<'de, S: Section> Visitor<'de> for Tables<S> {
            type Value = Pick<S>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TOML document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pick<S>, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == S::KEY {
                        found = Some(map.next_value::<S>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Pick(found))
            }
        }
        d.deserialize_map(Tables(PhantomData))
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
    /// Tell `perf` where compiled guest code lives (`"perfmap"` writes
    /// `/tmp/perf-<pid>.map`), so profiles name plugin functions. Off by
    /// default: it costs a write per compiled function at load.
    pub profiler: Profiler,
}

/// Which profiler the engine describes compiled guest code to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profiler {
    #[default]
    None,
    /// `perf record` / `perf report` with `/tmp/perf-<pid>.map`.
    Perfmap,
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
            profiler: Profiler::None,
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
pub fn toml_key(name: &str) -> String {
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
    /// variables from `env` to the engine's own keys.
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
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        let mut config: Config = toml::from_str(text).map_err(parse_error)?;
        config.sections.file = Some(Arc::new(File {
            path: path.to_path_buf(),
            text: text.to_string(),
            keys: table.keys().cloned().collect(),
        }));
        Ok(config)
    }

    /// Reads the section `S` as the file says it (its defaults when the
    /// file has no such table, or there is no file), applies its `KILN_*`
    /// variables and keeps it for [`Config::section`]. Its checks run with
    /// the engine's own, in [`Config::validate`].
    pub fn claim<S: Section>(&mut self, env: Env<'_>) -> Result<(), ConfigError> {
        let mut section = match &self.sections.file {
            Some(file) => toml::from_str::<Pick<S>>(&file.text)
                .map_err(|e| ConfigError::Parse {
                    path: file.path.clone(),
                    message: e.to_string(),
                })?
                .0
                .unwrap_or_default(),
            None => S::default(),
        };
        section.apply_env(env)?;
        *self.section_mut::<S>() = section;
        Ok(())
    }

    /// The section `S` as claimed; its defaults when it was not (a table
    /// in the file that nobody claims is refused by
    /// [`Config::refuse_unknown`], never ignored).
    pub fn section<S: Section>(&self) -> S {
        self.sections
            .claimed
            .iter()
            .find_map(|s| s.as_any().downcast_ref::<S>())
            .cloned()
            .unwrap_or_default()
    }

    /// The section `S`, to change (`kiln serve --dev`, tests).
    pub fn section_mut<S: Section>(&mut self) -> &mut S {
        let claimed = &mut self.sections.claimed;
        let at = match claimed.iter().position(|s| s.as_any().is::<S>()) {
            Some(at) => at,
            None => {
                claimed.push(Box::new(S::default()));
                claimed.len() - 1
            }
        };
        claimed[at]
            .as_any_mut()
            .downcast_mut::<S>()
            .expect("the slot was found or made for this type")
    }

    /// Refuses a top-level key of the file that neither the engine nor a
    /// claimed section owns (a typo must not be ignored).
    pub fn refuse_unknown(&self) -> Result<(), ConfigError> {
        let Some(file) = &self.sections.file else {
            return Ok(());
        };
        let claimed: Vec<&str> = self.sections.claimed.iter().map(|s| s.key()).collect();
        let known = || OWN_KEYS.iter().chain(&claimed);
        if let Some(unknown) = file.keys.iter().find(|k| !known().any(|known| known == k)) {
            let mut all: Vec<&str> = known().copied().collect();
            all.sort_unstable();
            return Err(ConfigError::Parse {
                path: file.path.clone(),
                message: format!(
                    "unknown key `{}` at the top level; expected one of {}",
                    crate::text::cut(unknown, 128),
                    all.join(", ")
                ),
            });
        }
        Ok(())
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
        if let Some(v) = env("KILN_REDIS_URL") {
            self.redis.url = Some(Secret(v));
        }
        Ok(())
    }

    /// Checks the engine's own keys and every claimed section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for section in &self.sections.claimed {
            section.validate()?;
        }
        if let Some(token) = &self.admin.token
            && token.0.len() < 16
        {
            return Err(invalid(
                "admin.token",
                "must be at least 16 characters; generate one with `openssl rand -hex 32`",
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
    /// decide: it may not raise the engine's `[limits]` or map secrets to
    /// environment variables (the hosts it asks for are checked by
    /// `host::outbound`). Keys the operator's `[plugins.<stem>]` sets
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
        use crate::http::config::HttpConfig;
        let c = crate::sections::parse(
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
        let http = c.section::<HttpConfig>();
        assert_eq!(http.max_request_body, ByteSize(2 << 20));
        assert_eq!(http.shutdown_grace_ms, 2500);
        assert_eq!(
            Config::default().section::<HttpConfig>().shutdown_grace_ms,
            10_000
        );
        assert_eq!(c.default_limits().timeout_ms, 500);
        assert_eq!(c.plugins["orders"].limits.memory, Some(ByteSize(16 << 20)));
        c.validate().unwrap();

        let err = crate::sections::parse(Path::new("k.toml"), "lisen = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k.toml") && err.contains("lisen"), "{err}");
        // A misspelt table is refused too, naming the tables there are.
        let err = crate::sections::parse(Path::new("k.toml"), "[htpp]\nhsts = true")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k.toml")
                && err.contains("unknown key `htpp`")
                && err.contains("http, identity"),
            "{err}"
        );
    }

    #[test]
    fn a_units_section_is_read_by_its_type_and_its_errors_keep_the_line() {
        use crate::mcp::McpConfig;
        let text = "listen = \"127.0.0.1:9000\"\n\n[mcp]\nmax_sessions = \"many\"\n";
        let err = crate::sections::parse(Path::new("k.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k.toml") && err.contains("line 4") && err.contains("max_sessions"),
            "{err}"
        );
        let err = crate::sections::parse(Path::new("k.toml"), "[mcp]\nmax_sesions = 1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_sesions") && err.contains("line 2"),
            "{err}"
        );
        // Checked with the engine's own keys, naming the full key.
        let c = crate::sections::parse(Path::new("k.toml"), "[mcp]\nmax_sessions = 0").unwrap();
        assert_eq!(c.section::<McpConfig>().max_sessions, 0);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("mcp.max_sessions"), "{err}");
        // Unclaimed, a section is its defaults; changed in place, it stays.
        let mut c = Config::default();
        assert_eq!(c.section::<McpConfig>().max_sessions, 2_000);
        c.section_mut::<McpConfig>().max_sessions = 7;
        assert_eq!(c.clone().section::<McpConfig>().max_sessions, 7);
    }

    #[test]
    fn a_units_environment_variables_apply_over_its_file_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.toml");
        std::fs::write(&path, "[database]\nurl = \"sqlite://file.db\"\n").unwrap();
        let env = |k: &str| match k {
            "KILN_DATABASE_URL" => Some("postgres://x@127.0.0.1/test".to_string()),
            "KILN_JWT_SECRET" => Some("s".repeat(40)),
            _ => None,
        };
        let c = crate::sections::load(Some(&path), env).unwrap();
        let db = c.section::<crate::store::DatabaseConfig>();
        assert_eq!(db.url(&c.data_dir), "postgres://x@127.0.0.1/test");
        let identity = c.section::<crate::identity::config::IdentityConfig>();
        let secret = identity.jwt.and_then(|j| j.secret);
        assert_eq!(
            secret.as_ref().map(Secret::expose),
            Some("s".repeat(40).as_str())
        );
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
        let c = crate::sections::parse(Path::new("kiln.toml"), toml).unwrap();
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
        let c = engine("[plugins.x.limits]\nfuel = 9000000000");
        // The operator's own [plugins.x] passes validation beyond [limits].
        assert_eq!(c.plugins["x"].limits.fuel, Some(9_000_000_000));
        // The file's fuel is replaced by the operator's, so it is not held
        // to the ceiling; its other keys are.
        assert!(check(&c, "[limits]\nfuel = 99999999999").is_ok());
        assert!(check(&c, "[limits]\nfuel = 1\ntimeout_ms = 20000").is_err());
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
