//! Host side of the WIT imports: one file per interface. Each file owns its
//! interface end to end: it links itself into the linker once, and reads what
//! it needs from the per-call [`CallState`]. What a plugin may do is decided
//! once at load, in [`PluginContext`], and enforced per call from there.

use std::collections::BTreeMap;

use wasmtime::component::{HasSelf, Linker};

use crate::runtime::bindings::kiln::plugin as wit;
use crate::runtime::state::CallState;

pub mod config;
pub mod kv;
pub mod log;

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
}

/// The shared services host interfaces draw on, built once at start.
#[derive(Clone, Default)]
pub struct HostServices {
    pub kv: Option<crate::store::kv::Kv>,
}

impl HostServices {
    /// What the plugin named `name` may reach: decided here, once per load.
    pub fn scope_for(&self, name: &str, context: &mut PluginContext) {
        context.kv = self.kv.clone().map(|kv| kv::KvScope {
            kv,
            namespace: name.to_string(),
        });
    }
}

/// Adds every Kiln interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wit::types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::log::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::config::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wit::kv::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Ok(())
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("kv", &self.kv.as_ref().map(|k| &k.namespace))
            .finish()
    }
}

impl wit::types::Host for CallState {}
