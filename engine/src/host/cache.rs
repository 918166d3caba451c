//! `kiln:plugin/cache`: the calling plugin's cache namespace, fixed at load.

use std::sync::Arc;

use super::Answer;
use crate::runtime::bindings::kiln::plugin::cache::Host;
use crate::runtime::bindings::types::{Error, ErrorCode};
use crate::runtime::state::CallState;
use crate::store::cache::Cache;

#[derive(Clone)]
pub struct CacheScope {
    pub cache: Cache,
    pub namespace: Arc<str>,
}

impl CallState {
    fn cache_scope(&self) -> Result<CacheScope, Error> {
        self.plugin.cache.clone().ok_or_else(|| Error {
            code: ErrorCode::Unavailable,
            message: "the cache is not available here (not during describe())".into(),
        })
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> Answer<Option<Vec<u8>>> {
        let s = scope_or_return!(self.cache_scope());
        let r = s.cache.get(&s.namespace, &key).await;
        self.data_answer("cache", r)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Answer<()> {
        let s = scope_or_return!(self.cache_scope());
        let r = s.cache.set(&s.namespace, &key, &value, ttl_ms).await;
        self.data_answer("cache", r)
    }

    async fn delete(&mut self, key: String) -> Answer<bool> {
        let s = scope_or_return!(self.cache_scope());
        let r = s.cache.delete(&s.namespace, &key).await;
        self.data_answer("cache", r)
    }
}
