//! One way to call a plugin: every front door (HTTP routes, GraphQL, MCP,
//! auth providers) names the export it needs and what the call is for, and
//! [`Plugin::call`] does the rest the same way for all of them:
//! gate → lease → per-call state → run under the limits → classify the
//! outcome → tell the observers.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::Instance;

use super::bindings::{
    AuthProviderIndices, GraphqlIndices, HttpHandlerIndices, HttpPricesIndices, McpIndices, types,
};
use super::observer::{CallInfo, CallReport, InstanceMode, Outcome};
use super::plugin::{CallError, Plugin};
use super::state::CallState;
use crate::host::capability::Handoff;
use crate::host::mcp_client::ClientLink;

/// The exports a component has beyond `describe`, found once at load.
#[derive(Default)]
pub(crate) struct Exports {
    pub(crate) http: Option<HttpHandlerIndices>,
    pub(crate) http_prices: Option<HttpPricesIndices>,
    pub(crate) graphql: Option<GraphqlIndices>,
    pub(crate) mcp: Option<McpIndices>,
    pub(crate) auth: Option<AuthProviderIndices>,
}

/// One export interface a front door calls: its WIT name and where its
/// indices are. A plugin without it answers [`CallError::NoExport`].
pub struct Export<I: 'static> {
    pub name: &'static str,
    pick: fn(&Exports) -> Option<&I>,
}

impl<I> Export<I> {
    pub(super) fn of<'a>(&self, exports: &'a Exports) -> Option<&'a I> {
        (self.pick)(exports)
    }
}

pub const HTTP_HANDLER: Export<HttpHandlerIndices> = Export {
    name: "kiln:plugin/http-handler",
    pick: |e| e.http.as_ref(),
};
pub const HTTP_PRICES: Export<HttpPricesIndices> = Export {
    name: "kiln:plugin/http-prices",
    pick: |e| e.http_prices.as_ref(),
};
pub const GRAPHQL: Export<GraphqlIndices> = Export {
    name: "kiln:plugin/graphql",
    pick: |e| e.graphql.as_ref(),
};
pub const MCP: Export<McpIndices> = Export {
    name: "kiln:plugin/mcp",
    pick: |e| e.mcp.as_ref(),
};
pub const AUTH_PROVIDER: Export<AuthProviderIndices> = Export {
    name: "kiln:plugin/auth-provider",
    pick: |e| e.auth.as_ref(),
};

/// Who a call is made for, as the plugin and the observers see it.
#[derive(Debug, Clone)]
pub struct CallerRef {
    /// The principal's stable id.
    pub subject: String,
    /// The principal as the JSON `kiln:plugin/identity` returns.
    pub json: String,
}

/// What one call is for: the request it serves, the operation (handler,
/// `Type.field`, tool, prompt or provider name), the caller, and for MCP
/// tools the client that hears progress.
pub struct CallSpec {
    pub request_id: Arc<str>,
    pub operation: String,
    pub caller: Option<CallerRef>,
    pub client: Option<ClientLink>,
    /// The hold and charges of a priced call (`kiln:plugin/billing`).
    pub meter: Option<Arc<crate::billing::Meter>>,
}

impl CallSpec {
    pub fn new(request_id: Arc<str>, operation: impl Into<String>) -> Self {
        CallSpec {
            request_id,
            operation: operation.into(),
            caller: None,
            client: None,
            meter: None,
        }
    }

    pub fn caller(mut self, caller: Option<CallerRef>) -> Self {
        self.caller = caller;
        self
    }

    pub fn client(mut self, client: Option<ClientLink>) -> Self {
        self.client = client;
        self
    }

    pub fn meter(mut self, meter: Option<Arc<crate::billing::Meter>>) -> Self {
        self.meter = meter;
        self
    }
}

/// What a call returns: the host's error (limits, traps, busy) outside, the
/// plugin's own answer inside.
pub type CallResult<T> = Result<Result<T, types::Error>, CallError>;

impl Plugin {
    /// Calls `export` for `spec`: `run` loads the export's guest functions
    /// from the instance and makes the one call. Every call of every front
    /// door goes through here.
    pub async fn call<I, T>(
        &self,
        export: &Export<I>,
        spec: CallSpec,
        run: impl AsyncFnOnce(
            &I,
            &mut Store<CallState>,
            Instance,
        ) -> wasmtime::Result<Result<T, types::Error>>,
    ) -> CallResult<T> {
        let span = tracing::debug_span!(
            "plugin_call",
            plugin = %self.manifest.name,
            export = export.name,
            operation = %spec.operation,
            request_id = %spec.request_id,
        );
        async move {
            let started = Instant::now();
            let info = CallInfo {
                plugin: &self.manifest.name,
                file: &self.stem,
                export: export.name,
                operation: &spec.operation,
                caller: spec.caller.as_ref().map(|c| c.subject.as_str()),
                request_id: &spec.request_id,
            };
            let Some(indices) = export.of(&self.exports) else {
                let error = CallError::NoExport(export.name);
                self.report::<T>(&info, &Err(error.clone()), started, None, false);
                return Err(error);
            };
            let _slot = match self.gate.enter().await {
                Ok(slot) => slot,
                Err(refusal) => {
                    let error = CallError::Busy(refusal);
                    self.report::<T>(&info, &Err(error.clone()), started, None, false);
                    return Err(error);
                }
            };
            self.observers.started(&info);
            // Reports the call as cancelled if its future is dropped before
            // it ends (the client went away): observers always hear the end.
            let mut unfinished = Unfinished {
                plugin: self,
                info: &info,
                started,
                armed: true,
            };
            let caller = spec.caller.as_ref().map(|c| c.json.clone());
            let handoff = Handoff {
                client: spec.client,
                meter: spec.meter,
            };
            let lease = self.lease(spec.request_id.clone(), caller, handoff);
            let mode = match (lease.instance.is_some(), self.reuses_instances()) {
                (true, _) => InstanceMode::Warm,
                (false, true) => InstanceMode::WarmNew,
                (false, false) => InstanceMode::Fresh,
            };
            let (result, fuel_left) = self
                .run(lease, async |store, instance| {
                    run(indices, store, instance).await
                })
                .await;
            unfinished.armed = false;
            self.report(&info, &result, started, Some((fuel_left, mode)), true);
            result
        }
        .instrument(span)
        .await
    }

    /// Tells the observers how a call ended.
    fn report<T>(
        &self,
        info: &CallInfo<'_>,
        result: &CallResult<T>,
        started: Instant,
        ran: Option<(Option<u64>, InstanceMode)>,
        admitted: bool,
    ) {
        let outcome = match result {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(e)) => Outcome::PluginError(e.code),
            Err(e) => Outcome::Failed(e),
        };
        let (fuel_left, instance) = ran.unwrap_or((None, InstanceMode::None));
        let report = CallReport {
            outcome,
            admitted,
            wall: started.elapsed(),
            fuel: fuel_left.map(|left| self.limits.fuel.saturating_sub(left)),
            instance,
        };
        ended(&report);
        self.observers.finished(info, &report);
    }

    /// Whether calls of this plugin reuse warm instances.
    pub fn reuses_instances(&self) -> bool {
        self.pool.is_some()
    }
}

/// A started call whose end the observers have not heard yet.
struct Unfinished<'a> {
    plugin: &'a Plugin,
    info: &'a CallInfo<'a>,
    started: Instant,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed {
            let report = CallReport {
                outcome: Outcome::Cancelled,
                admitted: true,
                wall: self.started.elapsed(),
                fuel: None,
                instance: InstanceMode::None,
            };
            ended(&report);
            self.plugin.observers.finished(self.info, &report);
        }
    }
}

/// The debug line every call ends with, inside its `plugin_call` span.
fn ended(report: &CallReport<'_>) {
    tracing::debug!(
        outcome = %report.outcome.name(),
        wall_us = report.wall.as_micros() as u64,
        fuel = report.fuel,
        instance = ?report.instance,
        "plugin call ended"
    );
}
