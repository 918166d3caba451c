//! Host side of the WIT imports: one capability per interface, each a file
//! that owns its interface end to end on the [`capability::Capability`]
//! seam: it builds itself from the shared services, links itself once,
//! decides at load what a plugin may reach (its scope, kept in
//! [`PluginContext`]) and sees per call only its own part of the state.

use std::sync::Arc;

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

pub mod capability;

// Every capability, one line each: its file in `host/` and its type (see
// `capability.rs`).
capability::capabilities! {
    log::Log,
    config::PluginConfig,
    kv::KeyValue,
    cache::CacheCapability,
    sql::Sql,
    pubsub::PubSub,
    identity::Identity,
    mcp_client::McpClient,
    outbound::Outbound,
    runtime_info::RuntimeInfo,
    billing::Billing,
}

/// What a plugin may reach, decided once per load (by each capability's
/// `scope`) and shared by every call.
pub struct PluginContext {
    /// The manifest name once known; the file stem while describing.
    pub name: Arc<str>,
    pub scopes: Scopes,
}

/// The shared services capabilities are built from, opened once at start.
#[derive(Clone, Default)]
pub struct HostServices {
    pub kv: Option<crate::store::kv::Kv>,
    pub cache: Option<crate::store::cache::Cache>,
    pub sql: Option<Arc<crate::store::sql::SqlService>>,
    pub pubsub: Option<crate::streams::Broker>,
}

/// Adds the shared types and every capability's interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wit::types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Capabilities::link(linker)
}

impl wit::types::Host for CallState {}

/// What a data import returns: a trap (never used for plugin mistakes) or
/// the plugin-facing result.
pub(crate) type Answer<T> = wasmtime::Result<Result<T, wit::types::Error>>;

impl capability::CallMeta {
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
                tracing::error!(plugin = %self.plugin, request_id = %self.request_id, error = %detail, "{what} failed");
                Error {
                    code: ErrorCode::Unavailable,
                    message: format!("the {what} is unavailable; try again later"),
                }
            }
        }))
    }
}
