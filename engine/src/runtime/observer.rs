//! Observers of plugin calls: every call on every front door is reported
//! here, once when it is admitted past the plugin's gate and once when it
//! ends (refused ones too). The per-plugin counters of the admin API are
//! one observer (`runtime::stats`); billing and metrics are meant to be
//! others. Observers run on the request path: they must be quick and must
//! not block.

use std::sync::Arc;
use std::time::Duration;

use super::bindings::types::ErrorCode;
use super::plugin::CallError;

/// What a call is: whose, which export, for what.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The plugin's manifest name.
    pub plugin: &'a str,
    /// Its file stem (the admin API's key).
    pub file: &'a str,
    /// The WIT export interface, e.g. `kiln:plugin/http-handler`.
    pub export: &'static str,
    /// The handler, `Type.field`, tool, prompt or provider called.
    pub operation: &'a str,
    /// The caller's subject; none when anonymous.
    pub caller: Option<&'a str>,
    pub request_id: &'a str,
}

/// How a call ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The plugin answered.
    Ok,
    /// The plugin answered with an error of its own.
    PluginError(ErrorCode),
    /// The host stopped or refused the call: busy, a limit, a trap.
    Failed(&'a CallError),
    /// The caller went away (its connection closed) before the answer, and
    /// the call was dropped with it.
    Cancelled,
}

impl Outcome<'_> {
    /// A stable name for logs and counters: `ok`, `plugin_error`, the
    /// host's [`CallError::kind`], or `cancelled`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::PluginError(_) => "plugin_error",
            Outcome::Failed(e) => e.kind(),
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Which instance served the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceMode {
    /// A fresh instance, dropped after the call.
    Fresh,
    /// A warm-mode plugin's new instance (none was idle).
    WarmNew,
    /// An idle warm instance from the pool.
    Warm,
    /// None: the call was refused before it ran.
    None,
}

/// What the host measured about one finished call.
#[derive(Debug, Clone, Copy)]
pub struct CallReport<'a> {
    pub outcome: Outcome<'a>,
    /// Whether the call got past the plugin's gate (and was `started`).
    pub admitted: bool,
    /// From the front door's call to the answer, queueing included.
    pub wall: Duration,
    /// Fuel the guest burned; none when fuel is off or it never ran.
    pub fuel: Option<u64>,
    pub instance: InstanceMode,
}

pub trait CallObserver: Send + Sync + 'static {
    /// The call got past the gate and is about to run.
    fn started(&self, _call: &CallInfo<'_>) {}
    /// The call ended, however it ended.
    fn finished(&self, call: &CallInfo<'_>, report: &CallReport<'_>);
}

/// The engine's observers, in the order they were registered.
#[derive(Clone, Default)]
pub struct Observers(Arc<[Arc<dyn CallObserver>]>);

impl Observers {
    pub fn new(observers: Vec<Arc<dyn CallObserver>>) -> Self {
        Observers(observers.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn started(&self, call: &CallInfo<'_>) {
        for o in self.0.iter() {
            o.started(call);
        }
    }

    pub(crate) fn finished(&self, call: &CallInfo<'_>, report: &CallReport<'_>) {
        for o in self.0.iter() {
            o.finished(call, report);
        }
    }
}

impl CallError {
    /// A stable name for the kind of failure (for counters and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Busy(_) => "busy",
            CallError::Timeout { .. } => "timeout",
            CallError::OutOfFuel { .. } => "out_of_fuel",
            CallError::OutOfMemory { .. } => "out_of_memory",
            CallError::Trap { .. } => "trap",
            CallError::NoExport(_) => "no_export",
        }
    }
}
