//! `kiln:plugin/identity`: the caller of the current call, as the host
//! authenticated it. Set per call (see `CallState::caller`); none for an
//! anonymous caller and while a plugin describes itself.

use crate::runtime::bindings::kiln::plugin::identity::Host;
use crate::runtime::state::CallState;

impl Host for CallState {
    fn caller(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.caller.clone())
    }
}
