//! Warm instances of one plugin: a bounded stack of (store, instance) pairs
//! that served a call cleanly. A call takes the most recently used one (its
//! memory is hottest) and gives it back when it returned normally; one that
//! trapped, timed out, was refused memory or served `max_uses` calls is
//! dropped instead, so a poisoned instance is never entered again. Instances
//! nobody took for `idle_timeout` are released, so a burst does not keep its
//! memory forever. [`WarmPools`] sees every plugin's pool, so idle
//! instances of one plugin never keep another from getting an instance.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::Instance;

use super::state::CallState;

pub struct Warm {
    pub store: Store<CallState>,
    pub instance: Instance,
    /// Calls this instance has served.
    pub uses: u32,
}

/// An instance waiting in the pool, and since when.
struct Idle {
    warm: Warm,
    since: Instant,
}

pub struct InstancePool {
    /// Oldest at the bottom: instances are pushed in time order and taken
    /// from the top, so the stack stays sorted by `since`.
    idle: Mutex<Vec<Idle>>,
    capacity: usize,
    max_uses: u32,
    /// None: idle instances stay until a call takes them.
    idle_timeout: Option<Duration>,
}

impl InstancePool {
    pub fn new(capacity: u32, max_uses: u32, idle_timeout: Option<Duration>) -> Self {
        InstancePool {
            idle: Mutex::new(Vec::with_capacity(capacity as usize)),
            capacity: capacity as usize,
            max_uses,
            idle_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn take(&self) -> Option<Warm> {
        self.lock().pop().map(|idle| idle.warm)
    }

    /// Keeps `warm` for a later call if it has uses left and there is room;
    /// otherwise it is dropped (outside the lock: dropping a store frees its
    /// pool slot, which is not free).
    pub fn give_back(&self, warm: Warm) {
        if warm.uses >= self.max_uses {
            return;
        }
        let rejected = {
            let mut idle = self.lock();
            if idle.len() < self.capacity {
                idle.push(Idle {
                    warm,
                    since: Instant::now(),
                });
                None
            } else {
                Some(warm)
            }
        };
        drop(rejected);
    }

    /// Drops the instances that have waited longer than the idle timeout
    /// at `now`; returns how many.
    pub fn release_idle(&self, now: Instant) -> usize {
        let Some(timeout) = self.idle_timeout else {
            return 0;
        };
        let released: Vec<Idle> = {
            let mut idle = self.lock();
            let stale = idle.partition_point(|i| now.duration_since(i.since) >= timeout);
            idle.drain(..stale).collect()
        };
        released.len()
    }

    /// Instances waiting for a call.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Drops every idle instance; returns how many.
    fn release_all(&self) -> usize {
        let released: Vec<Idle> = std::mem::take(&mut *self.lock());
        released.len()
    }
}

/// The warm pools of every loaded plugin (weakly: a pool goes when its
/// plugin is unloaded and its last call finished).
#[derive(Default)]
pub struct WarmPools {
    pools: Mutex<Vec<Weak<InstancePool>>>,
}

impl WarmPools {
    pub fn register(&self, pool: &Arc<InstancePool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    fn live(&self) -> Vec<Arc<InstancePool>> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.iter().filter_map(Weak::upgrade).collect()
    }

    /// Releases the instances idle past their plugin's timeout.
    pub fn release_idle(&self, now: Instant) -> usize {
        self.live().iter().map(|p| p.release_idle(now)).sum()
    }

    /// Releases every idle instance of every plugin: the engine ran out of
    /// instance slots, and a call that needs one matters more than an
    /// instance kept for a call that may come.
    pub fn release_all(&self) -> usize {
        self.live().iter().map(|p| p.release_all()).sum()
    }
}
