//! `kiln:plugin/cache`: the calling plugin's cache namespace, fixed at load.

use std::sync::Arc;

use super::capability::scope_in_call;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use super::{Answer, HostServices};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::cache::{Host, add_to_linker};
use crate::runtime::bindings::types::Error;
use crate::runtime::state::CallState;
use crate::store::cache::Cache;

/// The `kiln:plugin/cache` capability.
pub struct CacheCapability {
    cache: Option<Cache>,
}

#[derive(Clone)]
pub struct CacheScope {
    pub cache: Cache,
    pub namespace: Arc<str>,
}

impl Capability for CacheCapability {
    /// None while describing (or without a cache).
    type Scope = Option<CacheScope>;
    type Call = ();

    fn new(services: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(CacheCapability {
            cache: services.cache.clone(),
        })
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<Self::Scope, String> {
        Ok(plugin.unless_describing(&self.cache)
            .map(|cache| CacheScope {
                cache,
                namespace: Arc::from(plugin.name),
            }))
    }

    fn begin(_: &Self::Scope, _: &mut CallStart<'_>) {}
}

impl View<'_, CacheCapability> {
    fn cache_scope(&self) -> Result<CacheScope, Error> {
        scope_in_call(self.scope, "the cache")
    }
}

impl Host for View<'_, CacheCapability> {
    async fn get(&mut self, key: String) -> Answer<Option<Vec<u8>>> {
        let s = scope_or_return!(self.cache_scope());
        let r = s.cache.get(&s.namespace, &key).await;
        self.meta.data_answer("cache", r)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Answer<()> {
        let s = scope_or_return!(self.cache_scope());
        let r = s.cache.set(&s.namespace, &key, &value, ttl_ms).await;
        self.meta.data_answer("cache", r)
    }

    async fn delete(&mut self, key: String) -> Answer<bool> {
        let s = scope_or_return!(self.cache_scope());
        let r = s.cache.delete(&s.namespace, &key).await;
        self.meta.data_answer("cache", r)
    }
}
