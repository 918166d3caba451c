//! Carries pub/sub messages between engines through Redis. Every engine
//! publishes its plugins' messages to `kiln:pubsub:<topic>` and pattern-
//! subscribes to `kiln:pubsub:*`; each message carries the id of the engine
//! that sent it, so an engine skips its own (it delivered them locally at
//! once) and hands the rest to its local broker.
//!
//! Publishing never blocks a plugin: messages queue (bounded) for a task that
//! owns the Redis connection. When Redis is down the queue fills and further
//! messages are dropped for other engines (with a warning) — local
//! subscribers still get them — and both directions reconnect by themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::broker::{Broker, Forward, check_topic};
use crate::config::RedisConfig;

const CHANNEL_PREFIX: &str = "kiln:pubsub:";
/// Messages waiting to go to Redis before new ones are dropped, and the
/// bytes they may hold together (whichever comes first).
const OUTBOX: usize = 10_000;
const OUTBOX_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct RedisBridge {
    outbox: mpsc::Sender<(String, String)>,
    /// Bytes of the messages in `outbox`.
    queued: Arc<AtomicUsize>,
    lost: Arc<LostMessages>,
}

/// Counts messages that reached only this engine, and warns about them at
/// most every ten seconds, so an outage does not flood the log.
#[derive(Default)]
struct LostMessages {
    count: AtomicU64,
    last_warning: AtomicU64,
}

impl LostMessages {
    fn record(&self, topic: &str, why: &str) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                topic,
                reason = why,
                lost_so_far = count,
                "pub/sub messages reached only this engine's subscribers (Redis)"
            );
        }
    }
}

impl RedisBridge {
    /// Starts the two bridge tasks for `broker`. Fails only on a malformed URL;
    /// an unreachable Redis is retried in the background.
    pub fn start(broker: &Broker, config: &RedisConfig, url: &str) -> Result<RedisBridge, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis.url is invalid: {e}"))?;
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let (outbox, inbox) = mpsc::channel(OUTBOX);
        let lost = Arc::new(LostMessages::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .set_response_timeout(Some(Duration::from_millis(config.response_timeout_ms)));
        tokio::spawn(send_loop(
            client.clone(),
            manager_config,
            origin.clone(),
            inbox,
            queued.clone(),
            lost.clone(),
        ));
        tokio::spawn(receive_loop(
            client,
            broker.clone(),
            origin,
            Duration::from_millis(config.connect_timeout_ms),
        ));
        Ok(RedisBridge {
            outbox,
            queued,
            lost,
        })
    }
}

impl Forward for RedisBridge {
    /// Queues a message for the other engines.
    fn forward(&self, topic: &str, message: &str) {
        let size = topic.len() + message.len();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > OUTBOX_BYTES {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.lost.record(topic, "the queue to Redis is full");
            return;
        }
        if self
            .outbox
            .try_send((topic.to_string(), message.to_string()))
            .is_err()
        {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.lost.record(topic, "the queue to Redis is full");
        }
    }
}

async fn send_loop(
    client: redis::Client,
    config: ConnectionManagerConfig,
    origin: String,
    mut inbox: mpsc::Receiver<(String, String)>,
    queued: Arc<AtomicUsize>,
    lost: Arc<LostMessages>,
) {
    let mut connection: Option<ConnectionManager> = None;
    while let Some((topic, message)) = inbox.recv().await {
        queued.fetch_sub(topic.len() + message.len(), Ordering::Relaxed);
        if connection.is_none() {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    lost.record(&topic, &format!("cannot connect: {e}"));
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        let payload = format!("{origin}\n{message}");
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(format!("{CHANNEL_PREFIX}{topic}"))
            .arg(payload)
            .query_async(conn)
            .await;
        if let Err(e) = sent {
            lost.record(&topic, &format!("PUBLISH failed: {e}"));
        }
    }
}

async fn receive_loop(client: redis::Client, broker: Broker, origin: String, timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(timeout, subscribe(&client)).await {
            Ok(Ok(mut pubsub)) => {
                tracing::info!("receiving pub/sub messages from other engines through Redis");
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    deliver(
                        &broker,
                        &origin,
                        msg.get_channel_name(),
                        msg.get_payload_bytes(),
                    );
                }
                tracing::warn!("lost the Redis pub/sub connection; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to Redis pub/sub; retrying"),
            Err(_) => tracing::warn!("Redis pub/sub did not answer in time; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
    Ok(pubsub)
}

/// Hands one message from Redis to local subscribers, unless this engine
/// sent it. Anything malformed (another program on the channel) is skipped.
fn deliver(broker: &Broker, origin: &str, channel: &str, payload: &[u8]) {
    let Some(topic) = channel.strip_prefix(CHANNEL_PREFIX) else {
        return;
    };
    let Ok(payload) = std::str::from_utf8(payload) else {
        return;
    };
    let Some((sender, message)) = payload.split_once('\n') else {
        return;
    };
    if sender == origin || check_topic(topic).is_err() {
        return;
    }
    match serde_json::from_str(message) {
        Ok(value) => broker.deliver_local(topic, std::sync::Arc::new(value)),
        Err(e) => tracing::debug!(topic, error = %e, "skipping a non-JSON message from Redis"),
    }
}
