//! A loaded plugin: the pre-linked component, its checked manifest, limits
//! and admission gate. A call runs on a fresh instance from `InstancePre`,
//! or, when the plugin reuses instances, on a warm one from its pool; either
//! way a trap or a limit hit never leaves a poisoned instance behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::Runtime;
use super::bindings::{
    AuthProviderIndices, GraphqlIndices, HttpHandlerIndices, HttpPricesIndices, McpIndices,
    PluginIndices, types,
};
use super::cache::CacheOutcome;
use super::call::{Export, Exports};
use super::gate::{Gate, Refusal};
use super::observer::Observers;
use super::pool::{InstancePool, Warm, WarmPools};
use super::state::CallState;
use crate::config::{CpuLimit, InstanceReuse, Limits, PluginSettings};
use crate::hash::sha256_hex;
use crate::host::PluginContext;
use crate::host::capability::Handoff;
use crate::host::capability::{CallMeta, PluginFacts};
use crate::host::outbound::OutboundPolicy;
use crate::manifest::{Manifest, RawManifest};

/// A plugin file as read from disk, with its resolved settings.
pub struct PluginSource {
    pub path: PathBuf,
    /// The file name without `.wasm`: the key for settings and for the registry.
    pub stem: String,
    pub wasm: Vec<u8>,
    pub settings: PluginSettings,
    pub limits: Limits,
    /// Checked `[outbound] allowed_hosts`.
    pub outbound: OutboundPolicy,
}

/// Why a plugin file could not be loaded. The previous good version (if any)
/// keeps serving; the message reaches the log and the admin API.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("compiling failed: {0}")]
    Compile(String),
    #[error("the component needs imports this engine does not provide: {0}")]
    Imports(String),
    #[error(
        "the component does not export kiln:plugin/plugin@0.1.0 ({0}); build it with kiln-sdk \
         or target the kiln:plugin world"
    )]
    NoDescribe(String),
    /// A capability refused the plugin's settings (e.g. a secret whose
    /// environment variable is not set).
    #[error("{0}")]
    Scope(String),
    #[error("describe() failed: {0}")]
    Describe(CallError),
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// A front door refused what the plugin declared for it (its SDL, its
    /// MCP tools, its auth providers); each front door's own error.
    #[error(transparent)]
    Part(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a call into a plugin did not return normally.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("too busy: {}", busy_reason(.0))]
    Busy(Refusal),
    #[error("timed out after {limit_ms} ms")]
    Timeout { limit_ms: u64 },
    #[error("ran out of fuel (CPU limit of {limit} instructions)")]
    OutOfFuel { limit: u64 },
    #[error("exceeded its memory limit of {limit} bytes (asked for {requested})")]
    OutOfMemory { limit: u64, requested: usize },
    #[error("crashed: {detail}")]
    Trap { detail: String },
    /// The plugin does not export the interface the call needs: the
    /// engine's mistake (it should not have routed the call here), never
    /// the guest's, so it is not reported as a trap.
    #[error("does not export {0}")]
    NoExport(&'static str),
}

impl CallError {
    /// How the error reads to a client: a crash's detail (a panic message,
    /// a backtrace) only when `verbose` (dev mode); the log always has it.
    pub fn for_client(&self, verbose: bool) -> String {
        match self {
            CallError::Trap { .. } if !verbose => {
                "crashed; the engine log has the details under this request id".to_string()
            }
            other => other.to_string(),
        }
    }
}

/// Whether instantiating failed because the pooling allocator had no free
/// slot (instance, memory, table or stack) left.
fn is_out_of_slots(error: &wasmtime::Error) -> bool {
    error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
}

fn busy_reason(refusal: &Refusal) -> String {
    match refusal {
        Refusal::QueueFull => "its wait queue is full".into(),
        Refusal::WaitTimeout => "no free slot within the queue timeout".into(),
        Refusal::NoInstanceSlot { max_instances } => format!(
            "the engine has no free instance slot (all runtime.max_instances = {max_instances} \
             are running calls)"
        ),
    }
}

pub struct Plugin {
    pub path: PathBuf,
    pub stem: String,
    /// SHA-256 of the wasm file.
    pub hash: String,
    pub manifest: Manifest,
    pub limits: Limits,
    pub cache: CacheOutcome,
    pub context: Arc<PluginContext>,
    /// What the front doors learned from the plugin at load (its SDL
    /// fragment, its MCP declarations, its auth providers), by type.
    pub parts: Parts,
    /// The scopes of the calls that describe the plugin (no data access).
    describing: Arc<PluginContext>,
    /// The source language the component names (`JavaScript`, `Rust`…).
    pub language: Option<String>,
    pre: InstancePre<CallState>,
    /// Warm instances, when calls reuse them.
    pub(super) pool: Option<Arc<InstancePool>>,
    /// Every plugin's pools: emptied when the engine runs out of slots.
    warm_pools: Arc<WarmPools>,
    /// `runtime.max_instances`, for the error when no slot is free.
    max_instances: u32,
    /// Crash details in GraphQL and MCP answers (`kiln serve --dev`).
    pub(crate) verbose_errors: bool,
    pub(super) exports: Exports,
    /// Who hears about every call.
    pub(super) observers: Observers,
    pub(super) gate: Gate,
    cpu_limit: CpuLimit,
    tick: Duration,
}

/// One call's store and, when it came warm from the pool, its instance.
pub(super) struct Lease {
    pub(super) store: Store<CallState>,
    pub(super) instance: Option<Instance>,
    uses: u32,
    /// Whether the instance may serve later calls (describing a plugin at
    /// load happens on an instance of its own, so `max_uses` counts calls).
    reusable: bool,
}

impl Lease {
    /// A store with no instance yet: `run` instantiates it.
    fn fresh(store: Store<CallState>, reusable: bool) -> Self {
        Lease {
            store,
            instance: None,
            uses: 0,
            reusable,
        }
    }
}

/// The two header forms a `.wasm` can have.
fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    match wasm.get(0..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(LoadError::NotAComponent(
            "this is a core WebAssembly module; build with `--target wasm32-wasip2` (kiln build does) \
             or wrap it with `wasm-tools component new`"
                .into(),
        )),
        _ => Err(LoadError::NotAComponent(format!(
            "the file does not start with the wasm magic bytes ({} bytes long)",
            wasm.len()
        ))),
    }
}

impl Runtime {
    /// Compiles (or maps from cache), links, and describes `source`. Slow
    /// parts run on the blocking pool, never on a request path.
    pub async fn load(self: &Arc<Self>, source: PluginSource) -> Result<Plugin, LoadError> {
        check_header(&source.wasm)?;
        let hash = sha256_hex(&source.wasm);
        let language = super::language::of(&source.wasm);
        let wasm = source.wasm;
        let (component, cache) = {
            let this = self.clone();
            let hash = hash.clone();
            let file = source
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            super::compile_thread::run(move || this.cache.load(&this.engine, &wasm, &hash, &file))
                .await
                .map_err(|e| LoadError::Compile(format!("compiler thread failed: {e}")))?
                .map_err(|e| LoadError::Compile(format!("{e:#}")))?
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let describe =
            PluginIndices::new(&pre).map_err(|e| LoadError::NoDescribe(e.to_string()))?;
        let exports = Exports {
            http: HttpHandlerIndices::new(&pre).ok(),
            http_prices: HttpPricesIndices::new(&pre).ok(),
            graphql: GraphqlIndices::new(&pre).ok(),
            mcp: McpIndices::new(&pre).ok(),
            auth: AuthProviderIndices::new(&pre).ok(),
        };

        let outbound = Arc::new(source.outbound);
        let settings = source.settings;
        let file = source.stem.clone();
        let scopes = |name: &str, version: &str, describing: bool| {
            self.capabilities
                .scopes(&PluginFacts {
                    name,
                    version,
                    file: &file,
                    describing,
                    settings: &settings,
                    outbound: &outbound,
                })
                .map_err(LoadError::Scope)
        };
        let describing = Arc::new(PluginContext {
            name: Arc::from(file.as_str()),
            scopes: scopes(&file, "", true)?,
        });

        let limits = source.limits;
        let warm = match limits.instances {
            InstanceReuse::Warm => true,
            InstanceReuse::Fresh => false,
            InstanceReuse::Auto => super::language::is_interpreted(language.as_deref()),
        };
        let pool = warm.then(|| {
            let pool = Arc::new(InstancePool::new(
                limits.warm_instances,
                limits.max_uses,
                (limits.idle_timeout_ms > 0).then(|| Duration::from_millis(limits.idle_timeout_ms)),
            ));
            self.warm_pools.register(&pool);
            pool
        });
        let gate = Gate::new(
            limits.max_concurrency,
            limits.queue_size,
            Duration::from_millis(limits.queue_timeout_ms),
        );
        let mut plugin = Plugin {
            path: source.path,
            stem: source.stem,
            hash,
            manifest: Manifest {
                name: String::new(),
                version: String::new(),
                description: None,
                routes: Vec::new(),
            },
            limits,
            cache,
            context: describing.clone(),
            describing,
            parts: Parts::default(),
            language,
            pre,
            pool,
            warm_pools: self.warm_pools.clone(),
            max_instances: self.max_instances,
            verbose_errors: self.verbose_errors,
            exports,
            observers: self.observers.clone(),
            gate,
            cpu_limit: self.cpu_limit,
            tick: self.tick,
        };
        let raw = plugin
            .describe(&describe)
            .await
            .map_err(LoadError::Describe)?;
        let manifest = raw.validate().map_err(LoadError::Manifest)?;
        // From now on log lines carry the plugin's own name, and its data
        // lives under that name.
        plugin.context = Arc::new(PluginContext {
            name: Arc::from(manifest.name.as_str()),
            scopes: scopes(&manifest.name, &manifest.version, false)?,
        });
        plugin.manifest = manifest;
        Ok(plugin)
    }
}

impl Plugin {
    /// What capabilities may read about a call starting now.
    fn meta(&self, request_id: Arc<str>, caller: Option<String>) -> CallMeta {
        CallMeta {
            plugin: self.context.name.clone(),
            request_id,
            caller,
            deadline: Instant::now() + Duration::from_millis(self.limits.timeout_ms),
        }
    }

    fn new_store(
        &self,
        context: Arc<PluginContext>,
        meta: CallMeta,
        handoff: Handoff,
    ) -> Store<CallState> {
        let state = CallState::new(context, meta, handoff, self.limits.memory);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.cpu_limit == CpuLimit::Fuel {
            // Cannot fail: fuel is enabled on the engine whenever cpu_limit is Fuel.
            let _ = store.set_fuel(self.limits.fuel);
        }
        // Every tick: interrupt when the call's time is up, otherwise yield.
        // `tokio::task::yield_now` (not a plain self-wake) makes the worker
        // poll the IO driver before resuming this guest, so a busy guest
        // cannot starve the sockets of every other request.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().meta.deadline {
                ctx.data_mut().timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// The backstop for guests blocked in a host call, where epochs cannot
    /// interrupt them: the future is dropped, and the instance with it.
    fn hard_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.timeout_ms) + self.tick * 4
    }

    /// Turns a failed call into what happened, using what the store saw
    /// rather than the trap code alone, and logs it with the plugin's name.
    fn failure(&self, store: &Store<CallState>, error: Option<wasmtime::Error>) -> CallError {
        let state = store.data();
        let output = state.stderr.text();
        let err = if error.as_ref().is_some_and(is_out_of_slots) {
            CallError::Busy(Refusal::NoInstanceSlot {
                max_instances: self.max_instances,
            })
        } else if state.timed_out || error.is_none() {
            CallError::Timeout {
                limit_ms: self.limits.timeout_ms,
            }
        } else if let Some(requested) = state.limiter.refused {
            CallError::OutOfMemory {
                limit: self.limits.memory,
                requested,
            }
        } else {
            let error = error.as_ref();
            match error.and_then(|e| e.downcast_ref::<Trap>()) {
                Some(Trap::OutOfFuel) => CallError::OutOfFuel {
                    limit: self.limits.fuel,
                },
                Some(Trap::Interrupt) => CallError::Timeout {
                    limit_ms: self.limits.timeout_ms,
                },
                Some(trap) => CallError::Trap {
                    detail: panic_message(&output).unwrap_or_else(|| trap.to_string()),
                },
                None => CallError::Trap {
                    detail: error.map(|e| format!("{e:#}")).unwrap_or_default(),
                },
            }
        };
        tracing::error!(
            plugin = %self.manifest_name(),
            request_id = %state.meta.request_id,
            error = %err,
            guest_stderr = %output,
            "plugin call failed"
        );
        err
    }

    /// What a call returned, or what went wrong in the host's terms; logs
    /// whatever the guest printed.
    fn finish<R>(
        &self,
        store: &Store<CallState>,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, CallError> {
        match outcome {
            Ok(Ok(value)) => {
                let state = store.data();
                for (stream, output) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
                    // Most calls print nothing: check before decoding.
                    if !output.is_empty() {
                        let text = output.text();
                        tracing::info!(target: "plugin", plugin = %self.manifest_name(), request_id = %state.meta.request_id, stream, "{text}");
                    }
                }
                Ok(value)
            }
            Ok(Err(e)) => Err(self.failure(store, Some(e))),
            Err(_) => Err(self.failure(store, None)),
        }
    }

    fn manifest_name(&self) -> &str {
        if self.manifest.name.is_empty() {
            &self.stem
        } else {
            &self.manifest.name
        }
    }

    /// A store for one call: a warm one from the pool when the plugin reuses
    /// instances and one is idle, else a new store (instantiated in `run`).
    pub(super) fn lease(
        &self,
        request_id: Arc<str>,
        caller: Option<String>,
        handoff: Handoff,
    ) -> Lease {
        let meta = self.meta(request_id, caller);
        if let Some(pool) = &self.pool
            && let Some(mut warm) = pool.take()
        {
            warm.store
                .data_mut()
                .begin_call(self.context.clone(), meta, handoff);
            if self.cpu_limit == CpuLimit::Fuel {
                // Cannot fail: fuel is enabled on the engine whenever cpu_limit is Fuel.
                let _ = warm.store.set_fuel(self.limits.fuel);
            }
            warm.store.set_epoch_deadline(1);
            return Lease {
                store: warm.store,
                instance: Some(warm.instance),
                uses: warm.uses,
                reusable: true,
            };
        }
        Lease::fresh(self.new_store(self.context.clone(), meta, handoff), true)
    }

    /// A fresh store for the calls that describe the plugin at load.
    fn describe_lease(&self) -> Lease {
        let mut meta = self.meta(Arc::from("describe"), None);
        meta.plugin = self.describing.name.clone();
        Lease::fresh(
            self.new_store(self.describing.clone(), meta, Handoff::default()),
            false,
        )
    }

    /// A new instance in `store`. When every slot of the pooling allocator
    /// is taken, idle warm instances (of any plugin) make room and the
    /// instantiation is tried once more; only running calls can fill the
    /// engine.
    async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        match self.pre.instantiate_async(&mut *store).await {
            Err(e) if is_out_of_slots(&e) => {
                let released = self.warm_pools.release_all();
                tracing::debug!(
                    released,
                    "no free instance slot; released idle warm instances"
                );
                if released == 0 {
                    return Err(e);
                }
                self.pre.instantiate_async(store).await
            }
            other => other,
        }
    }

    /// Runs `call` on the lease's instance (instantiating it first when the
    /// lease is fresh) under the call's limits. A warm-mode instance that
    /// returned normally and hit no limit goes back to the pool; any other
    /// is dropped with its store. Also returns the fuel left, when fuel is on.
    pub(super) async fn run<R>(
        &self,
        mut lease: Lease,
        call: impl AsyncFnOnce(&mut Store<CallState>, Instance) -> wasmtime::Result<R>,
    ) -> (Result<R, CallError>, Option<u64>) {
        let outcome = tokio::time::timeout(self.hard_timeout(), async {
            let instance = match lease.instance {
                Some(instance) => instance,
                None => {
                    let instance = self.instantiate(&mut lease.store).await?;
                    lease.instance = Some(instance);
                    instance
                }
            };
            call(&mut lease.store, instance).await
        })
        .await;
        let result = self.finish(&lease.store, outcome);
        let fuel_left = match self.cpu_limit {
            CpuLimit::Fuel => lease.store.get_fuel().ok(),
            CpuLimit::Epoch => None,
        };
        let clean = {
            let state = lease.store.data();
            result.is_ok() && !state.timed_out && state.limiter.refused.is_none()
        };
        if clean
            && lease.reusable
            && let (Some(pool), Some(instance)) = (&self.pool, lease.instance)
        {
            lease.store.data_mut().end_call();
            pool.give_back(Warm {
                store: lease.store,
                instance,
                uses: lease.uses + 1,
            });
        }
        (result, fuel_left)
    }

    async fn describe(&self, indices: &PluginIndices) -> Result<RawManifest, CallError> {
        let lease = self.describe_lease();
        let m = self
            .run(lease, async |store, instance| {
                let guest = indices.load(&mut *store, &instance)?;
                guest.call_describe(store).await
            })
            .await
            .0?;
        Ok(RawManifest {
            name: m.name,
            version: m.version,
            description: m.description,
            routes: m
                .routes
                .into_iter()
                .map(|r| (method_name(r.method), r.path, r.handler))
                .collect(),
        })
    }

    /// Asks the plugin something at load (its SDL, its tools, its
    /// providers) through `export`, on an instance of its own with the
    /// scopes of describing (no data access, no gate, no observers). None
    /// when the plugin does not export it.
    pub async fn ask<I, R>(
        &self,
        export: &Export<I>,
        run: impl AsyncFnOnce(&I, &mut Store<CallState>, Instance) -> wasmtime::Result<R>,
    ) -> Option<Result<R, CallError>> {
        let indices = export.of(&self.exports)?;
        let lease = self.describe_lease();
        Some(
            self.run(lease, async |store, instance| {
                run(indices, store, instance).await
            })
            .await
            .0,
        )
    }

    /// The plugin's file name, e.g. `hello.wasm`.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether the plugin exports `export`.
    pub fn exports<I>(&self, export: &Export<I>) -> bool {
        export.of(&self.exports).is_some()
    }

    /// Whether calls reuse warm instances, and how many are idle now.
    pub fn warm_idle(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.idle())
    }

    /// Calls waiting at the gate now (running ones are counted by the
    /// call observers: `runtime::stats`).
    pub fn waiting_now(&self) -> u32 {
        self.gate.waiting()
    }
}

fn method_name(m: types::Method) -> String {
    use types::Method::*;
    match m {
        Get => "GET".into(),
        Post => "POST".into(),
        Put => "PUT".into(),
        Patch => "PATCH".into(),
        Delete => "DELETE".into(),
        Head => "HEAD".into(),
        Options => "OPTIONS".into(),
        Other(s) => s,
    }
}

/// What a guest said about its crash on stderr: a Rust panic message, or
/// the uncaught exception the JS SDK reports before it traps.
fn panic_message(stderr: &str) -> Option<String> {
    if let Some(start) = stderr.find("Uncaught exception in ") {
        let line = stderr[start..].lines().next().unwrap_or_default();
        return Some(crate::text::cut(line, 512).to_string());
    }
    let start = stderr.find("panicked at ")?;
    let line = stderr[start..]
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join(": ");
    Some(crate::text::cut(&line, 512).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_modules_from_components() {
        assert!(check_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        let e = check_header(b"\0asm\x01\0\0\0").unwrap_err().to_string();
        assert!(e.contains("core WebAssembly module"), "{e}");
        let e = check_header(b"garbage").unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn a_missing_export_is_not_a_crash() {
        let e = CallError::NoExport("kiln:plugin/mcp");
        assert_eq!(e.to_string(), "does not export kiln:plugin/mcp");
        // Never hidden like a crash's detail: it names no guest internals.
        assert_eq!(e.for_client(false), "does not export kiln:plugin/mcp");
        let api = crate::request::error::ApiError::from_call("p", &e, false);
        assert_eq!(api.code, "plugin_no_export");
    }

    #[test]
    fn panic_messages_are_extracted() {
        let s = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom\nnote: run with RUST_BACKTRACE=1";
        assert_eq!(
            panic_message(s).unwrap(),
            "panicked at src/lib.rs:10:5:: boom"
        );
        assert_eq!(panic_message("nothing"), None);
        let js = "Uncaught exception in GET /x: Error: kaboom\nStack:\n  at f@index.js:3\nRedirecting call to abort()";
        assert_eq!(
            panic_message(js).unwrap(),
            "Uncaught exception in GET /x: Error: kaboom"
        );
    }
}

/// What the front doors keep about a plugin, one value per type: each
/// front door reads back only its own.
#[derive(Default)]
pub struct Parts(Vec<Box<dyn std::any::Any + Send + Sync>>);

impl Parts {
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.iter().find_map(|part| part.downcast_ref::<T>())
    }

    /// Keeps `part`, replacing one of the same type.
    pub fn insert<T: std::any::Any + Send + Sync>(&mut self, part: T) {
        self.0.retain(|p| !p.is::<T>());
        self.0.push(Box::new(part));
    }
}
