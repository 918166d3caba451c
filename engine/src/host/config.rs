//! `kiln:plugin/config`: the calling plugin's own settings and secrets, and
//! nothing else: the lookup goes through the plugin's [`PluginContext`].
//!
//! [`PluginContext`]: super::PluginContext

use crate::runtime::bindings::kiln::plugin::config::Host;
use crate::runtime::state::CallState;

impl Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.config.get(&key).cloned())
    }

    fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.plugin.config.keys().cloned().collect())
    }

    fn get_secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.secrets.get(&key).cloned())
    }
}
