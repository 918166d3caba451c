//! Warm instances of one plugin: a bounded stack of (store, instance) pairs
//! that served a call cleanly. A call takes the most recently used one (its
//! memory is hottest) and gives it back when it returned normally; one that
//! trapped, timed out, was refused memory or served `max_uses` calls is
//! dropped instead, so a poisoned instance is never entered again.

use std::sync::Mutex;

use wasmtime::Store;
use wasmtime::component::Instance;

use super::state::CallState;

pub struct Warm {
    pub store: Store<CallState>,
    pub instance: Instance,
    /// Calls this instance has served.
    pub uses: u32,
}

pub struct InstancePool {
    idle: Mutex<Vec<Warm>>,
    capacity: usize,
    max_uses: u32,
}

impl InstancePool {
    pub fn new(capacity: u32, max_uses: u32) -> Self {
        InstancePool {
            idle: Mutex::new(Vec::with_capacity(capacity as usize)),
            capacity: capacity as usize,
            max_uses,
        }
    }

    pub fn take(&self) -> Option<Warm> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Keeps `warm` for a later call if it has uses left and there is room;
    /// otherwise it is dropped (outside the lock: dropping a store frees its
    /// pool slot, which is not free).
    pub fn give_back(&self, warm: Warm) {
        if warm.uses >= self.max_uses {
            return;
        }
        let rejected = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.capacity {
                idle.push(warm);
                None
            } else {
                Some(warm)
            }
        };
        drop(rejected);
    }

    /// Instances waiting for a call.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
