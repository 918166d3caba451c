//! Telling every engine that something cached changed, through one Redis
//! channel per kind of news (a key revoked, a balance moved). Each engine
//! publishes what it changed and hears what the others did. Best effort by
//! design: a cache entry that misses its news still expires on its own, and
//! an engine that lost its subscription is told to forget everything on
//! reconnecting, since it may have missed news while away.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::RedisConfig;

/// What a listener does with the news it hears.
pub trait Listener: Send + Sync + 'static {
    /// One message from another engine (or this one: Redis echoes to
    /// every subscriber).
    fn heard(&self, payload: &str);
    /// The subscription was lost and is back: news may have been missed.
    fn missed(&self);
}

/// Publishes on one channel; does nothing without Redis (one engine needs
/// no news).
#[derive(Clone, Default)]
pub struct Announcer {
    channel: &'static str,
    client: Option<(redis::Client, Duration)>,
}

impl Announcer {
    /// Publishes on `channel` and, with `listener`, listens to it in the
    /// background (an unreachable Redis is retried).
    pub fn start(
        channel: &'static str,
        redis: Option<(&RedisConfig, &str)>,
        listener: Option<Arc<dyn Listener>>,
    ) -> Result<Self, String> {
        let Some((config, url)) = redis else {
            return Ok(Announcer {
                channel,
                client: None,
            });
        };
        let client = redis::Client::open(url).map_err(|e| format!("redis.url is invalid: {e}"))?;
        let timeout =
            Duration::from_millis(config.connect_timeout_ms.max(config.response_timeout_ms));
        if let Some(listener) = listener {
            tokio::spawn(listen(client.clone(), channel, listener, timeout));
        }
        Ok(Announcer {
            channel,
            client: Some((client, timeout)),
        })
    }

    /// Whether news goes anywhere (Redis is configured).
    pub fn is_shared(&self) -> bool {
        self.client.is_some()
    }

    /// Tells every engine `payload`. Whether it was sent; a failure is
    /// logged by the caller, who knows what it means.
    pub async fn announce(&self, payload: &str) -> Result<(), String> {
        let Some((client, timeout)) = &self.client else {
            return Ok(());
        };
        let sent = tokio::time::timeout(*timeout, async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PUBLISH")
                .arg(self.channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("Redis did not answer in time".into()),
        }
    }
}

async fn listen(
    client: redis::Client,
    channel: &'static str,
    listener: Arc<dyn Listener>,
    timeout: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(mut pubsub)) => {
                if connected_before {
                    listener.missed();
                }
                connected_before = true;
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(payload) = std::str::from_utf8(msg.get_payload_bytes()) {
                        listener.heard(payload);
                    }
                }
                tracing::warn!(channel, "lost the Redis subscription; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(channel, error = %e, "cannot subscribe in Redis; retrying")
            }
            Err(_) => tracing::warn!(
                channel,
                "Redis did not answer the subscription in time; retrying"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
