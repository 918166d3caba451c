//! Revoking an API key on every engine at once. Each engine caches checked
//! keys (`admin.key_cache_ttl_ms`); with Redis configured, a revocation —
//! through the admin API of any engine or `kiln keys revoke` — is published
//! on `kiln:keys:revoked`, and every engine drops the key from its cache
//! when it hears it. After losing the subscription an engine drops its
//! whole key cache on reconnecting, since it may have missed revocations.

use std::sync::Arc;

use super::api_keys::ApiKeys;
use crate::config::RedisConfig;
use crate::store::announce::{Announcer, Listener};

const CHANNEL: &str = "kiln:keys:revoked";

/// Announces revocations; none without Redis (one engine needs nothing).
#[derive(Clone, Default)]
pub struct Revocations {
    announcer: Announcer,
}

/// Drops what other engines revoked from this engine's key cache.
struct Forget(ApiKeys);

impl Listener for Forget {
    fn heard(&self, key_id: &str) {
        tracing::info!(
            key_id,
            "API key revoked on another engine; dropped from the cache"
        );
        let keys = self.0.clone();
        let key_id = key_id.to_string();
        tokio::spawn(async move { keys.forget(&key_id).await });
    }

    fn missed(&self) {
        let keys = self.0.clone();
        tokio::spawn(async move { keys.forget_all().await });
    }
}

impl Revocations {
    /// Starts listening (in the background; an unreachable Redis is retried)
    /// and returns the announcer.
    pub fn start(keys: ApiKeys, redis: Option<(&RedisConfig, &str)>) -> Result<Self, String> {
        let announcer = Announcer::start(CHANNEL, redis, Some(Arc::new(Forget(keys))))?;
        Ok(Revocations { announcer })
    }

    /// For the CLI: publishes without listening.
    pub fn publisher(redis: Option<(&RedisConfig, &str)>) -> Result<Self, String> {
        Ok(Revocations {
            announcer: Announcer::start(CHANNEL, redis, None)?,
        })
    }

    /// Tells every engine that `key_id` is revoked. Whether it was sent;
    /// a failure is logged (other engines then trust the key until their
    /// cache entry expires).
    pub async fn announce(&self, key_id: &str) -> bool {
        match self.announcer.announce(key_id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(key_id, error = %e, "could not announce a key revocation through Redis; other engines trust the key until their cache expires");
                false
            }
        }
    }
}
