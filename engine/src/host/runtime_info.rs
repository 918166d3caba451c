//! `kiln:plugin/runtime-info`: a plugin's own name and version, the
//! engine's, the request it serves, and the time its call has left. All of
//! it is what the host already decided (the checked manifest, the call's
//! deadline): a plugin learns nothing here it could not be told anyway.

use std::time::Instant;

use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::runtime_info::{Details, Host, add_to_linker};
use crate::runtime::state::CallState;

/// The `kiln:plugin/runtime-info` capability.
pub struct RuntimeInfo;

/// The plugin's identity as its checked manifest gives it.
pub struct InfoScope {
    name: String,
    version: String,
}

impl Capability for RuntimeInfo {
    type Scope = InfoScope;
    type Call = ();

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(RuntimeInfo)
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<InfoScope, String> {
        Ok(InfoScope {
            name: plugin.name.to_string(),
            version: plugin.version.to_string(),
        })
    }

    fn begin(_: &InfoScope, _: &mut CallStart<'_>) {}
}

impl Host for View<'_, RuntimeInfo> {
    fn info(&mut self) -> wasmtime::Result<Details> {
        Ok(Details {
            plugin_name: self.scope.name.clone(),
            plugin_version: self.scope.version.clone(),
            engine_name: "kiln".to_string(),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            request_id: self.meta.request_id.to_string(),
        })
    }

    fn time_left_ms(&mut self) -> wasmtime::Result<u64> {
        let left = self.meta.deadline.saturating_duration_since(Instant::now());
        Ok(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }
}
