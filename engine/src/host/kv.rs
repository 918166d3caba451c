//! `kiln:plugin/kv`: the calling plugin's key-value data. The namespace is
//! the plugin's manifest name, fixed at load in its [`PluginContext`]; a
//! plugin has no way to name another namespace.
//!
//! [`PluginContext`]: super::PluginContext

use super::Answer;
use crate::runtime::bindings::kiln::plugin::kv::Host;
use crate::runtime::bindings::types::{Error, ErrorCode};
use crate::runtime::state::CallState;
use crate::store::kv::Kv;

/// A plugin's handle on the store: the store and its own namespace.
#[derive(Clone)]
pub struct KvScope {
    pub kv: Kv,
    pub namespace: String,
}

impl CallState {
    fn kv_scope(&self) -> Result<KvScope, Error> {
        self.plugin.kv.clone().ok_or_else(|| Error {
            code: ErrorCode::Unavailable,
            message: "the key-value store is not available here (not during describe())".into(),
        })
    }

    fn kv_answer<T>(&self, result: Result<T, crate::store::DataError>) -> Answer<T> {
        self.data_answer("key-value store", result)
    }
}

impl Host for CallState {
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
