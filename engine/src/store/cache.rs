//! The plugin cache: values with a required time to live, in process (moka,
//! bounded by bytes) by default, or in Redis when `redis.url` is set so every
//! engine shares it. Namespaced per plugin like the key-value store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::DataError;
use crate::config::{ByteSize, RedisConfig};

/// `[cache]`: the plugin cache.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Capacity of the in-process cache (keys + values).
    pub max_bytes: ByteSize,
    /// Largest single value.
    pub max_value: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: ByteSize(64 << 20),
            max_value: ByteSize(1 << 20),
        }
    }
}

impl crate::config::Section for CacheConfig {
    const KEY: &'static str = "cache";

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        if self.max_value.0 == 0 || self.max_value > self.max_bytes {
            return Err(crate::config::invalid(
                "cache.max_value",
                "must be between 1 byte and cache.max_bytes",
            ));
        }
        Ok(())
    }
}

pub const MAX_KEY_BYTES: usize = 512;
/// A month: longer-lived data belongs in the key-value store.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<(Arc<str>, String), Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &(Arc<str>, String),
        e: &Entry,
        _: Instant,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
    fn expire_after_update(
        &self,
        _: &(Arc<str>, String),
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
}

#[derive(Clone)]
enum Backend {
    Local(moka::future::Cache<(Arc<str>, String), Entry>),
    Redis(ConnectionManager),
}

#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    max_value: usize,
}

impl Cache {
    /// The in-process cache, bounded to `config.max_bytes` of keys and values.
    pub fn local(config: &CacheConfig) -> Cache {
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_bytes.0)
            .weigher(|k: &(Arc<str>, String), v: &Entry| {
                u32::try_from(k.0.len() + k.1.len() + v.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Cache {
            backend: Backend::Local(cache),
            max_value: max_value(config),
        }
    }

    /// The shared cache in Redis. The connection is made lazily and remade
    /// by itself after Redis goes away; until then calls fail fast with
    /// `Unavailable`.
    pub fn redis(config: &CacheConfig, redis: &RedisConfig, url: &str) -> Result<Cache, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis.url is invalid: {e}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(redis.connect_timeout_ms)))
            .set_response_timeout(Some(Duration::from_millis(redis.response_timeout_ms)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| format!("cannot set up the Redis connection: {e}"))?;
        Ok(Cache {
            backend: Backend::Redis(manager),
            max_value: max_value(config),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Local(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// A round trip to Redis (always fine in process).
    pub async fn ping(&self) -> Result<(), DataError> {
        match &self.backend {
            Backend::Local(_) => Ok(()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(unavailable)
            }
        }
    }

    fn check(&self, key: &str, value: Option<&[u8]>) -> Result<(), DataError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(DataError::Invalid(format!(
                "key must be 1-{MAX_KEY_BYTES} bytes, got {}",
                key.len()
            )));
        }
        if let Some(v) = value
            && v.len() > self.max_value
        {
            return Err(DataError::Invalid(format!(
                "value is {} bytes; the cache limit is {}",
                v.len(),
                self.max_value
            )));
        }
        Ok(())
    }

    pub async fn get(&self, ns: &Arc<str>, key: &str) -> Result<Option<Vec<u8>>, DataError> {
        self.check(key, None)?;
        match &self.backend {
            Backend::Local(c) => Ok(c
                .get(&(ns.clone(), key.to_string()))
                .await
                .map(|e| e.value.to_vec())),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                conn.get::<_, Option<Vec<u8>>>(redis_key(ns, key))
                    .await
                    .map_err(unavailable)
            }
        }
    }

    pub async fn set(
        &self,
        ns: &Arc<str>,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<(), DataError> {
        self.check(key, Some(value))?;
        if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
            return Err(DataError::Invalid(format!(
                "ttl-ms must be 1-{MAX_TTL_MS}, got {ttl_ms}"
            )));
        }
        match &self.backend {
            Backend::Local(c) => {
                let entry = Entry {
                    value: Arc::from(value),
                    ttl: Duration::from_millis(ttl_ms),
                };
                c.insert((ns.clone(), key.to_string()), entry).await;
                Ok(())
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let options =
                    redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms));
                conn.set_options::<_, _, ()>(redis_key(ns, key), value, options)
                    .await
                    .map_err(unavailable)
            }
        }
    }

    pub async fn delete(&self, ns: &Arc<str>, key: &str) -> Result<bool, DataError> {
        self.check(key, None)?;
        match &self.backend {
            Backend::Local(c) => Ok(c.remove(&(ns.clone(), key.to_string())).await.is_some()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                conn.del::<_, u64>(redis_key(ns, key))
                    .await
                    .map(|n| n > 0)
                    .map_err(unavailable)
            }
        }
    }
}

fn max_value(config: &CacheConfig) -> usize {
    usize::try_from(config.max_value.0).unwrap_or(usize::MAX)
}

/// Plugin names cannot contain ':', so namespaces never overlap.
fn redis_key(ns: &str, key: &str) -> String {
    format!("kiln:cache:{ns}:{key}")
}

fn unavailable(e: redis::RedisError) -> DataError {
    DataError::Unavailable(format!("Redis: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn local() -> Cache {
        Cache::local(&CacheConfig {
            max_bytes: ByteSize(1 << 20),
            max_value: ByteSize(1 << 16),
        })
    }

    #[tokio::test]
    async fn local_cache_namespaces_expires_and_bounds_values() {
        let c = local();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        c.set(&a, "k", b"v", 60_000).await.unwrap();
        assert_eq!(c.get(&a, "k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(c.get(&b, "k").await.unwrap(), None);
        c.set(&a, "short", b"v", 20).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(c.get(&a, "short").await.unwrap(), None);
        assert!(c.delete(&a, "k").await.unwrap());
        assert!(!c.delete(&a, "k").await.unwrap());
        let err = c
            .set(&a, "big", &vec![0; (1 << 16) + 1], 1000)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cache limit"), "{err}");
        assert!(c.set(&a, "k", b"v", 0).await.is_err());
        assert!(c.get(&a, "").await.is_err());
    }

    #[tokio::test]
    async fn local_cache_stays_within_its_byte_budget() {
        let c = local();
        let ns: Arc<str> = Arc::from("a");
        for i in 0..100 {
            c.set(&ns, &format!("k{i}"), &vec![0; 60_000], 60_000)
                .await
                .unwrap();
        }
        let Backend::Local(inner) = &c.backend else {
            unreachable!()
        };
        inner.run_pending_tasks().await;
        assert!(
            inner.weighted_size() <= 1 << 20,
            "{}",
            inner.weighted_size()
        );
    }
}
