//! `kiln:plugin/kv`: the calling plugin's key-value data. The namespace is
//! the plugin's manifest name, fixed at load in its scope; a plugin has no
//! way to name another namespace.

use super::capability::scope_in_call;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use super::{Answer, HostServices};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::kv::{Host, add_to_linker};
use crate::runtime::bindings::types::Error;
use crate::runtime::state::CallState;
use crate::store::kv::Kv;

/// The `kiln:plugin/kv` capability.
pub struct KeyValue {
    kv: Option<Kv>,
}

/// A plugin's handle on the store: the store and its own namespace.
#[derive(Clone)]
pub struct KvScope {
    pub kv: Kv,
    pub namespace: String,
}

impl Capability for KeyValue {
    /// None while describing (or without a store).
    type Scope = Option<KvScope>;
    type Call = ();

    fn new(services: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(KeyValue {
            kv: services.kv.clone(),
        })
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<Self::Scope, String> {
        Ok(plugin.unless_describing(&self.kv)
            .map(|kv| KvScope {
                kv,
                namespace: plugin.name.to_string(),
            }))
    }

    fn begin(_: &Self::Scope, _: &mut CallStart<'_>) {}
}

impl View<'_, KeyValue> {
    fn kv_scope(&self) -> Result<KvScope, Error> {
        scope_in_call(self.scope, "the key-value store")
    }

    fn kv_answer<T>(&self, result: Result<T, crate::store::DataError>) -> Answer<T> {
        self.meta.data_answer("key-value store", result)
    }
}

impl Host for View<'_, KeyValue> {
    async fn get(&mut self, key: String) -> Answer<Option<Vec<u8>>> {
        let s = scope_or_return!(self.kv_scope());
        let r = s.kv.get(&s.namespace, &key).await;
        self.kv_answer(r)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Answer<()> {
        let s = scope_or_return!(self.kv_scope());
        let r = s.kv.set(&s.namespace, &key, &value, ttl_ms).await;
        self.kv_answer(r)
    }

    async fn delete(&mut self, key: String) -> Answer<bool> {
        let s = scope_or_return!(self.kv_scope());
        let r = s.kv.delete(&s.namespace, &key).await;
        self.kv_answer(r)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Vec<String>> {
        let s = scope_or_return!(self.kv_scope());
        let r =
            s.kv.list_keys(&s.namespace, &prefix, after.as_deref(), limit)
                .await;
        self.kv_answer(r)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Answer<i64> {
        let s = scope_or_return!(self.kv_scope());
        let r = s.kv.increment(&s.namespace, &key, delta).await;
        self.kv_answer(r)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Answer<bool> {
        let s = scope_or_return!(self.kv_scope());
        let r =
            s.kv.compare_and_swap(&s.namespace, &key, expected.as_deref(), &value, ttl_ms)
                .await;
        self.kv_answer(r)
    }
}
