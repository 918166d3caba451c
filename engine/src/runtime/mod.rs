//! The wasmtime side: one `Engine` (pooling allocator, fuel or epoch limits),
//! one `Linker` with every host interface, the compiled-component cache, and
//! the loading of a plugin file into a ready-to-call [`Plugin`].

pub mod bindings;
pub mod cache;
pub mod call;
pub mod compile_thread;
pub mod gate;
pub mod language;
pub mod observer;
pub mod output;
pub mod plugin;
pub mod pool;
pub mod state;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{Config, CpuLimit};
use crate::host::{Capabilities, HostServices};
pub use cache::CacheOutcome;
pub use call::{CallResult, CallSpec, CallerRef};
pub use observer::{CallObserver, Observers};
pub use plugin::{CallError, LoadError, Plugin, PluginSource};
use state::CallState;

pub struct Runtime {
    engine: Engine,
    /// Every host capability: what plugins may reach is decided here.
    pub(crate) capabilities: Capabilities,
    linker: Linker<CallState>,
    cache: cache::CompileCache,
    pub(crate) cpu_limit: CpuLimit,
    pub(crate) tick: Duration,
    ticker_stop: Arc<AtomicBool>,
    /// Every plugin's warm instances.
    pub(crate) warm_pools: Arc<pool::WarmPools>,
    /// Instance slots of the pooling allocator.
    pub(crate) max_instances: u32,
    /// Crash details in answers (`kiln serve --dev`).
    pub(crate) verbose_errors: bool,
    /// Who hears about every plugin call.
    pub(crate) observers: Observers,
}

impl Runtime {
    pub fn new(
        config: &Config,
        services: HostServices,
        observers: Observers,
    ) -> anyhow::Result<Runtime> {
        let rt = &config.runtime;
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true);
        wasm.consume_fuel(rt.cpu_limit == CpuLimit::Fuel);
        // Compiles use every core, at the lowest priority: requests first.
        if rt.parallel_compilation {
            compile_thread::low_priority_pool();
        }
        wasm.parallel_compilation(rt.parallel_compilation);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(config)));
        if rt.profiler == crate::config::Profiler::Perfmap {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the wasm engine: {e}. The pooling allocator reserves virtual \
                 memory for runtime.max_instances ({}) instances; lower it if address space \
                 is limited (ulimit -v)",
                rt.max_instances
            )
        })?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        crate::host::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking Kiln host interfaces: {e}"))?;

        let capabilities = Capabilities::new(&services, config).map_err(anyhow::Error::msg)?;
        let cache_dir: Option<PathBuf> = rt.compile_cache.then(|| config.cache_dir());
        let cache = cache::CompileCache::new(&engine, cache_dir);
        let tick = Duration::from_millis(rt.epoch_tick_ms);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        start_ticker(engine.clone(), tick, ticker_stop.clone())?;
        Ok(Runtime {
            engine,
            capabilities,
            linker,
            cache,
            cpu_limit: rt.cpu_limit,
            tick,
            ticker_stop,
            warm_pools: Arc::default(),
            max_instances: rt.max_instances,
            verbose_errors: config.verbose_errors,
            observers,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Releases the warm instances idle past their plugin's
    /// `idle_timeout_ms`; returns how many.
    pub fn release_idle_instances(&self, now: std::time::Instant) -> usize {
        self.warm_pools.release_idle(now)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Release);
    }
}

fn pooling(config: &Config) -> PoolingAllocationConfig {
    let rt = &config.runtime;
    let n = rt.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    // A component holds a few core instances (the program and its adapter
    // shims) but usually one memory; leave room for both.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n)
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(usize::try_from(rt.max_memory.0).unwrap_or(usize::MAX))
        // Resetting a resident page with memset is far cheaper than giving it
        // back to the kernel and faulting it in again on the next call.
        .linear_memory_keep_resident(
            usize::try_from(rt.memory_keep_resident.0).unwrap_or(usize::MAX),
        )
        // With the PAGEMAP_SCAN ioctl (Linux 6.7+) only the pages a call
        // dirtied are reset, not the whole resident prefix: for a small
        // Rust plugin that is a few pages instead of a megabyte memset per
        // fresh instance. Elsewhere it falls back to the memset.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .table_keep_resident(64 * 1024);
    pool
}

/// Advances the engine's epoch every `tick`: the clock behind timeouts and
/// the cooperative yields of long-running guests.
fn start_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("kiln-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the epoch ticker thread: {e}"))?;
    Ok(())
}
