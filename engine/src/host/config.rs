//! `kiln:plugin/config`: the calling plugin's own settings and secrets, and
//! nothing else: the lookup goes through the plugin's [`PluginContext`].
//!
//! [`PluginContext`]: super::PluginContext

use std::collections::BTreeMap;

use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::config::{Host, add_to_linker};
use crate::runtime::state::CallState;

/// The `kiln:plugin/config` capability.
pub struct PluginConfig;

/// A plugin's settings and its secrets, resolved from the environment at
/// load. Secret values are never logged.
pub struct ConfigScope {
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

impl Capability for PluginConfig {
    type Scope = ConfigScope;
    type Call = ();

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(PluginConfig)
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    /// Settings are readable while describing too (a plugin may name its
    /// routes after them); a secret whose variable is unset refuses the
    /// plugin.
    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<ConfigScope, String> {
        let mut secrets = BTreeMap::new();
        for (secret, var) in &plugin.settings.secrets {
            let value = std::env::var(var).map_err(|_| {
                format!("secret '{secret}' names environment variable {var}, which is not set")
            })?;
            secrets.insert(secret.clone(), value);
        }
        Ok(ConfigScope {
            config: plugin.settings.config.clone(),
            secrets,
        })
    }

    fn begin(_: &ConfigScope, _: &mut CallStart<'_>) {}
}

impl Host for View<'_, PluginConfig> {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.scope.config.get(&key).cloned())
    }

    fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.scope.config.keys().cloned().collect())
    }

    fn get_secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.scope.secrets.get(&key).cloned())
    }
}
