//! What a store carries for one call: WASI context, the memory limiter, the
//! plugin's scopes, each capability's part of the call, and what the call
//! observed (timed out, memory refused) so errors can name the real cause.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::output::GuestOutput;
use crate::host::capability::{CallMeta, CallStart, Handoff};
use crate::host::{Calls, PluginContext, Scopes};

pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    pub limiter: MemoryLimiter,
    /// The plugin being called: its name and every capability's scope.
    pub plugin: Arc<PluginContext>,
    /// What every capability may read about this call.
    pub meta: CallMeta,
    /// Each capability's part of this call.
    calls: Calls,
    /// Set by the epoch callback when it interrupted the guest.
    pub timed_out: bool,
    pub stdout: GuestOutput,
    pub stderr: GuestOutput,
}

impl CallState {
    pub fn new(
        plugin: Arc<PluginContext>,
        meta: CallMeta,
        handoff: Handoff,
        memory_limit: u64,
    ) -> Self {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        // No environment, arguments, preopened directories or sockets: a
        // plugin reaches the world only through Kiln's own interfaces.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let calls = plugin.scopes.begin(&mut CallStart {
            meta: &meta,
            handoff,
        });
        CallState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            limiter: MemoryLimiter::new(memory_limit),
            plugin,
            meta,
            calls,
            timed_out: false,
            stdout,
            stderr,
        }
    }

    /// Readies a warm instance's state for its next call: everything that
    /// belongs to one call starts over, and the plugin context is the
    /// current one (the instance may have been created while describing).
    pub fn begin_call(&mut self, plugin: Arc<PluginContext>, meta: CallMeta, handoff: Handoff) {
        self.calls = plugin.scopes.begin(&mut CallStart {
            meta: &meta,
            handoff,
        });
        self.plugin = plugin;
        self.meta = meta;
        self.timed_out = false;
        self.limiter.refused = None;
        self.stdout.clear();
        self.stderr.clear();
    }

    /// Lets go of what belongs to the finished call before the instance
    /// waits in the pool: above all the MCP client link, whose channel the
    /// host reads until every sender is gone.
    pub fn end_call(&mut self) {
        self.calls.end();
        self.meta.caller = None;
    }

    /// The capabilities' view of the state: scopes, per-call parts, and
    /// what they may read about the call (see `host::capability::Holds`).
    pub(crate) fn parts(&mut self) -> (&Scopes, &mut Calls, &CallMeta) {
        (&self.plugin.scopes, &mut self.calls, &self.meta)
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            // The outbound capability's part of the call: the allow-list.
            hooks: &mut self.calls.outbound,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps each linear memory of the instance and remembers a refusal: a guest
/// denied memory usually aborts itself with `unreachable`, so the trap code
/// alone would not tell the user what happened.
pub struct MemoryLimiter {
    max_bytes: usize,
    /// The size the guest asked for when it was refused.
    pub refused: Option<usize>,
}

/// Tables only hold function references; this is generous for real programs
/// and small enough that a runaway `table.grow` cannot eat the host.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub fn new(max_bytes: u64) -> Self {
        MemoryLimiter {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            refused: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limiter_refuses_growth_past_the_cap_and_remembers_it() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(l.refused, None);
        assert!(!l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(l.refused, Some(2 << 20));
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }
}
