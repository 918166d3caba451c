//! Revoking an API key on every engine at once. Each engine caches checked
//! keys (`admin.key_cache_ttl_ms`); with Redis configured, a revocation —
//! through the admin API of any engine or `kiln keys revoke` — is published
//! on `kiln:keys:revoked`, and every engine drops the key from its cache
//! when it hears it. After losing the subscription an engine drops its
//! whole key cache on reconnecting, since it may have missed revocations.

use std::time::Duration;

use futures_util::StreamExt;

use super::api_keys::ApiKeys;
use crate::config::RedisConfig;

const CHANNEL: &str = "kiln:keys:revoked";

/// Announces revocations; none without Redis (one engine needs nothing).
#[derive(Clone, Default)]
pub struct Revocations {
    client: Option<(redis::Client, Duration)>,
}

impl Revocations {
    /// Starts listening (in the background; an unreachable Redis is retried)
    /// and returns the announcer.
    pub fn start(keys: ApiKeys, redis: Option<(&RedisConfig, &str)>) -> Result<Self, String> {
        let Some((config, url)) = redis else {
            return Ok(Revocations::default());
        };
        let client = redis::Client::open(url).map_err(|e| format!("redis.url is invalid: {e}"))?;
        let timeout =
            Duration::from_millis(config.connect_timeout_ms.max(config.response_timeout_ms));
        tokio::spawn(listen(client.clone(), keys, timeout));
        Ok(Revocations {
            client: Some((client, timeout)),
        })
    }

    /// For the CLI: publishes without listening.
    pub fn publisher(redis: Option<(&RedisConfig, &str)>) -> Result<Self, String> {
        let Some((config, url)) = redis else {
            return Ok(Revocations::default());
        };
        let client = redis::Client::open(url).map_err(|e| format!("redis.url is invalid: {e}"))?;
        let timeout =
            Duration::from_millis(config.connect_timeout_ms.max(config.response_timeout_ms));
        Ok(Revocations {
            client: Some((client, timeout)),
        })
    }

    /// Tells every engine that `key_id` is revoked. Whether it was sent;
    /// a failure is logged (other engines then trust the key until their
    /// cache entry expires).
    pub async fn announce(&self, key_id: &str) -> bool {
        let Some((client, timeout)) = &self.client else {
            return true;
        };
        let sent = tokio::time::timeout(*timeout, async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(key_id)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
        match sent {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::error!(key_id, error = %e, "could not announce a key revocation through Redis; other engines trust the key until their cache expires");
                false
            }
            Err(_) => {
                tracing::error!(
                    key_id,
                    "Redis did not answer a key revocation in time; other engines trust the key until their cache expires"
                );
                false
            }
        }
    }
}

async fn listen(client: redis::Client, keys: ApiKeys, timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(mut pubsub)) => {
                if connected_before {
                    // Revocations may have gone by while we were away.
                    keys.forget_all().await;
                }
                connected_before = true;
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(key_id) = std::str::from_utf8(msg.get_payload_bytes()) {
                        tracing::info!(
                            key_id,
                            "API key revoked on another engine; dropped from the cache"
                        );
                        keys.forget(key_id).await;
                    }
                }
                tracing::warn!("lost the Redis subscription for key revocations; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot subscribe to key revocations in Redis; retrying")
            }
            Err(_) => tracing::warn!(
                "Redis did not answer the key revocation subscription in time; retrying"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
