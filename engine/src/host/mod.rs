//! Host side of the WIT imports: one file per interface. Each file owns its
//! interface end to end: it links itself into the linker once, and reads what
//! it needs from the per-call [`CallState`]. What a plugin may do is decided
//! once at load, in [`PluginContext`], and enforced per call from there.

use std::collections::BTreeMap;

use wasmtime::component::{HasSelf, Linker};

use crate::runtime::bindings::kiln::plugin as wit;
use crate::runtime::state::CallState;

/// The calling plugin's scope for a data import, or the plugin-facing error
/// (e.g. "not during describe()") returned from the import at once.
macro_rules! scope_or_return {
    ($scope:expr) => {
        match $scope {
            Ok(scope) => scope,
            Err(error) => return Ok(Err(error)),
        }
    };
}

pub mod cache;
pub mod config;
pub mod identity;
pub mod kv;
pub mod log;
pub mod mcp_client;
pub mod outbound;
pub mod pubsub;
pub mod sql;

/// What every host interface needs to know about the calling plugin. Built
/// once per load; shared by every call.
#[derive(Clone, Default)]
pub struct PluginContext {
    /// The manifest name once known; the file stem while describing.
    pub name: String,
    pub config: BTreeMap<String, String>,
    /// Secret values, resolved from the environment at load. Never logged.
    pub secrets: BTreeMap<String, String>,
    /// The plugin's key-value namespace; none while it is being described.
    pub kv: Option<kv::KvScope>,
    /// The plugin's cache namespace; none while it is being described.
    pub cache: Option<cache::CacheScope>,
    /// The plugin's own SQL database or schema; none while it is being described.
    pub sql: Option<sql::SqlScope>,
    /// The pub/sub broker; none while the plugin is being described.
    pub pubsub: Option<crate::streams::Broker>,
    /// The hosts the plugin may send HTTP requests to.
    pub outbound: std::sync::Arc<outbound::OutboundPolicy>,
}

/// The shared services host interfaces draw on, built once at start.
#[derive(Clone, Default)]
pub struct HostServices {
    pub kv: Option<crate::store::kv::Kv>,
    pub cache: Option<crate::store::cache::Cache>,
    pub sql: Option<std::sync::Arc<crate::store::sql::SqlService>>,
    pub pubsub: Option<crate::streams::Broker>,
}

impl HostServices {
    /// What the plugin named `name` may reach: decided here, once per load.
    pub fn scope_for(&self, name: &str, context: &mut PluginContext) {
        context.kv = self.kv.clone().map(|kv| kv::KvScope {
            kv,
            namespace: name.to_string(),
        });
        context.cache = self.cache.clone().map(|cache| cache::CacheScope {
            cache,
            namespace: std::sync::Arc::from(name),
        });
        context.sql = self.sql.clone().map(|service| sql::SqlScope {
            service,
            plugin: name.to_string(),
        });
        context.pubsub = self.pubsub.clone();
    }
}

/// Adds every Kiln interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wit::types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::log::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::config::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::kv::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::cache::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::sql::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::pubsub::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::mcp_client::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::identity::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Ok(())
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("kv", &self.kv.as_ref().map(|k| &k.namespace))
            .field("cache", &self.cache.as_ref().map(|c| &c.namespace))
            .field("sql", &self.sql.as_ref().map(|s| &s.plugin))
            .field("outbound", &self.outbound)
            .finish()
    }
}

impl wit::types::Host for CallState {}

/// What a data import returns: a trap (never used for plugin mistakes) or
/// the plugin-facing result.
pub(crate) type Answer<T> = wasmtime::Result<Result<T, wit::types::Error>>;

impl CallState {
    /// Maps a store error to what the plugin sees: its own mistakes with the
    /// reason, service failures as `unavailable` with the detail kept in the
    /// log (it may name hosts and users).
    pub(crate) fn data_answer<T>(
        &self,
        what: &str,
        result: Result<T, crate::store::DataError>,
    ) -> Answer<T> {
        use wit::types::{Error, ErrorCode};
        Ok(result.map_err(|e| match e {
            crate::store::DataError::Invalid(message) => Error { code: ErrorCode::BadRequest, message },
            crate::store::DataError::Unavailable(detail) => {
                tracing::error!(plugin = %self.plugin.name, request_id = %self.request_id, error = %detail, "{what} failed");
                Error {
                    code: ErrorCode::Unavailable,
                    message: format!("the {what} is unavailable; try again later"),
                }
            }
        }))
    }
}
