//! Per-plugin call counters, kept by a [`CallObserver`]: what the admin
//! API shows under each plugin's `calls`. Keyed by file, so they run on
//! across reloads of the same file, like any monotonic counter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::observer::{CallInfo, CallObserver, CallReport, Outcome};
use super::plugin::CallError;

#[derive(Default)]
pub struct CallStats {
    plugins: RwLock<HashMap<String, Arc<Counters>>>,
}

/// One file's counters.
#[derive(Default)]
struct Counters {
    running: AtomicU64,
    total: AtomicU64,
    ok: AtomicU64,
    plugin_errors: AtomicU64,
    busy: AtomicU64,
    timeout: AtomicU64,
    out_of_fuel: AtomicU64,
    out_of_memory: AtomicU64,
    trap: AtomicU64,
    no_export: AtomicU64,
    cancelled: AtomicU64,
    wall_us: AtomicU64,
    fuel: AtomicU64,
}

/// What the admin API shows for one plugin file.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls past the gate and not yet finished.
    pub running: u64,
    /// Every call that finished, however.
    pub total: u64,
    pub ok: u64,
    /// The plugin answered with an error of its own.
    pub plugin_errors: u64,
    /// The host refused or stopped the call, by reason.
    pub failed: Failed,
    /// Wall time of all finished calls, queueing included.
    pub wall_ms: u64,
    /// Fuel burned by all finished calls (0 when fuel is off).
    pub fuel: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Failed {
    pub busy: u64,
    pub timeout: u64,
    pub out_of_fuel: u64,
    pub out_of_memory: u64,
    pub trap: u64,
    pub no_export: u64,
    /// The caller went away before the answer.
    pub cancelled: u64,
}

impl CallStats {
    /// The counters of plugin file `file`; zeros when it was never called.
    pub fn of(&self, file: &str) -> CallCounts {
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        let Some(c) = plugins.get(file) else {
            return CallCounts::default();
        };
        CallCounts {
            running: c.running.load(Relaxed),
            total: c.total.load(Relaxed),
            ok: c.ok.load(Relaxed),
            plugin_errors: c.plugin_errors.load(Relaxed),
            failed: Failed {
                busy: c.busy.load(Relaxed),
                timeout: c.timeout.load(Relaxed),
                out_of_fuel: c.out_of_fuel.load(Relaxed),
                out_of_memory: c.out_of_memory.load(Relaxed),
                trap: c.trap.load(Relaxed),
                no_export: c.no_export.load(Relaxed),
                cancelled: c.cancelled.load(Relaxed),
            },
            wall_ms: c.wall_us.load(Relaxed) / 1000,
            fuel: c.fuel.load(Relaxed),
        }
    }

    fn counters(&self, file: &str) -> Arc<Counters> {
        if let Some(c) = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(file)
        {
            return c.clone();
        }
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(file.to_string())
            .or_default()
            .clone()
    }
}

impl CallObserver for CallStats {
    fn started(&self, call: &CallInfo<'_>) {
        self.counters(call.file).running.fetch_add(1, Relaxed);
    }

    fn finished(&self, call: &CallInfo<'_>, report: &CallReport<'_>) {
        let c = self.counters(call.file);
        if report.admitted {
            c.running.fetch_sub(1, Relaxed);
        }
        c.total.fetch_add(1, Relaxed);
        let counter = match report.outcome {
            Outcome::Ok => &c.ok,
            Outcome::PluginError(_) => &c.plugin_errors,
            Outcome::Failed(e) => match e {
                CallError::Busy(_) => &c.busy,
                CallError::Timeout { .. } => &c.timeout,
                CallError::OutOfFuel { .. } => &c.out_of_fuel,
                CallError::OutOfMemory { .. } => &c.out_of_memory,
                CallError::Trap { .. } => &c.trap,
                CallError::NoExport(_) => &c.no_export,
            },
            Outcome::Cancelled => &c.cancelled,
        };
        counter.fetch_add(1, Relaxed);
        let us = u64::try_from(report.wall.as_micros()).unwrap_or(u64::MAX);
        c.wall_us.fetch_add(us, Relaxed);
        if let Some(fuel) = report.fuel {
            c.fuel.fetch_add(fuel, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::ErrorCode;
    use crate::runtime::observer::InstanceMode;
    use std::time::Duration;

    fn info(file: &str) -> CallInfo<'_> {
        CallInfo {
            plugin: "p",
            file,
            export: "kiln:plugin/http-handler",
            operation: "h",
            caller: None,
            request_id: "r",
        }
    }

    fn report(outcome: Outcome<'_>, admitted: bool) -> CallReport<'_> {
        CallReport {
            outcome,
            admitted,
            wall: Duration::from_millis(2),
            fuel: Some(10),
            instance: InstanceMode::Fresh,
        }
    }

    #[test]
    fn counts_every_outcome_per_file() {
        let stats = CallStats::default();
        let a = info("a");
        stats.started(&a);
        assert_eq!(stats.of("a").running, 1);
        stats.finished(&a, &report(Outcome::Ok, true));
        stats.started(&a);
        stats.finished(&a, &report(Outcome::PluginError(ErrorCode::NotFound), true));
        let timeout = CallError::Timeout { limit_ms: 5 };
        stats.started(&a);
        stats.finished(&a, &report(Outcome::Failed(&timeout), true));
        // Refused at the gate: never started, so `running` is untouched.
        let busy = CallError::Busy(crate::runtime::gate::Refusal::QueueFull);
        stats.finished(&a, &report(Outcome::Failed(&busy), false));

        let counts = stats.of("a");
        assert_eq!(counts.running, 0);
        assert_eq!(counts.total, 4);
        assert_eq!(counts.ok, 1);
        assert_eq!(counts.plugin_errors, 1);
        assert_eq!(counts.failed.timeout, 1);
        assert_eq!(counts.failed.busy, 1);
        assert_eq!(counts.wall_ms, 8);
        assert_eq!(counts.fuel, 40);
        assert_eq!(stats.of("b"), CallCounts::default());
    }
}
