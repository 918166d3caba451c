//! `kiln:plugin/identity`: the caller of the current call, as the host
//! authenticated it. Set per call (see `CallState::caller`); none for an
//! anonymous caller and while a plugin describes itself.

use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::identity::{Host, add_to_linker};
use crate::runtime::state::CallState;

/// The `kiln:plugin/identity` capability: the caller is the call's, so
/// there is nothing to scope.
pub struct Identity;

impl Capability for Identity {
    type Scope = ();
    type Call = ();

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(Identity)
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, _: &PluginFacts<'_>) -> Result<(), String> {
        Ok(())
    }

    fn begin(_: &(), _: &mut CallStart<'_>) {}
}

impl Host for View<'_, Identity> {
    fn caller(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.meta.caller.clone())
    }
}
