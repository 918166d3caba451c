//! The in-process pub/sub broker. One bounded ring buffer per topic (a tokio
//! broadcast channel): a publish never waits, each message is stored once
//! however many subscribers read it, and a subscriber that falls more than
//! `subscriber_buffer` messages behind is told so and dropped, instead of
//! slowing the publisher or growing memory.
//!
//! Topics exist while someone listens: publishing to a topic nobody
//! subscribes to costs a map lookup. With a Redis bridge attached, local
//! publishes also go to Redis, and messages from other engines arrive through
//! [`Broker::deliver_local`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// The pub/sub broker behind GraphQL subscriptions.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubsubConfig {
    /// Messages a subscriber may fall behind before it is dropped (with an
    /// error) so that it never slows the publisher or grows memory.
    pub subscriber_buffer: usize,
    /// Largest message a plugin may publish.
    pub max_message: crate::config::ByteSize,
}

impl Default for PubsubConfig {
    fn default() -> Self {
        PubsubConfig {
            subscriber_buffer: 256,
            max_message: crate::config::ByteSize(64 << 10),
        }
    }
}

impl crate::config::Section for PubsubConfig {
    const KEY: &'static str = "pubsub";

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::invalid;
        if self.subscriber_buffer == 0 || self.subscriber_buffer > 65_536 {
            return Err(invalid(
                "pubsub.subscriber_buffer",
                "must be between 1 and 65536",
            ));
        }
        if self.max_message.0 == 0 || self.max_message.0 > 16 << 20 {
            return Err(invalid(
                "pubsub.max_message",
                "must be between 1 byte and 16MiB",
            ));
        }
        Ok(())
    }
}

/// Longest topic name.
pub const MAX_TOPIC: usize = 128;

/// A published message: JSON, parsed once and shared by every subscriber.
pub type Message = Arc<serde_json::Value>;

#[derive(Clone)]
pub struct Broker(Arc<Inner>);

struct Inner {
    topics: Mutex<HashMap<String, broadcast::Sender<Message>>>,
    buffer: usize,
    max_message: usize,
    bridge: Mutex<Option<Box<dyn Forward>>>,
}

/// Where publishes go besides this engine's subscribers: other engines
/// (`redis_bridge::RedisBridge`). A trait so that the broker does not know
/// the bridge, which depends on it.
pub trait Forward: Send + Sync + 'static {
    /// Sends one checked publish on; never waits.
    fn forward(&self, topic: &str, message: &str);
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
}

impl Broker {
    pub fn new(subscriber_buffer: usize, max_message: usize) -> Self {
        Broker(Arc::new(Inner {
            topics: Mutex::new(HashMap::new()),
            // tokio rounds a broadcast ring up to a power of two; say so.
            buffer: subscriber_buffer.max(1).next_power_of_two(),
            max_message,
            bridge: Mutex::new(None),
        }))
    }

    /// Sends every later publish to other engines through `bridge` too.
    pub fn attach_bridge(&self, bridge: impl Forward) {
        *lock(&self.0.bridge) = Some(Box::new(bridge));
    }

    /// Checks `topic` and `message` (JSON text), then fans it out here and,
    /// with a bridge, to other engines. Never waits for subscribers.
    pub fn publish(&self, topic: &str, message: &str) -> Result<(), PublishError> {
        check_topic(topic).map_err(PublishError::Invalid)?;
        if message.len() > self.0.max_message {
            return Err(PublishError::Invalid(format!(
                "the message is {} bytes; the limit is {} (pubsub.max_message)",
                message.len(),
                self.0.max_message
            )));
        }
        let value: serde_json::Value = serde_json::from_str(message)
            .map_err(|e| PublishError::Invalid(format!("the message is not JSON: {e}")))?;
        self.deliver_local(topic, Arc::new(value));
        if let Some(bridge) = lock(&self.0.bridge).as_ref() {
            bridge.forward(topic, message);
        }
        Ok(())
    }

    /// Hands `message` to this engine's subscribers of `topic`.
    pub fn deliver_local(&self, topic: &str, message: Message) {
        let mut topics = lock(&self.0.topics);
        if let Some(sender) = topics.get(topic)
            && sender.send(message).is_err()
        {
            // No receiver left: forget the topic until someone subscribes again.
            topics.remove(topic);
        }
    }

    /// Starts receiving what is published to `topic` from now on.
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, PublishError> {
        check_topic(topic).map_err(PublishError::Invalid)?;
        let mut topics = lock(&self.0.topics);
        let receiver = match topics.get(topic) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(self.0.buffer);
                topics.insert(topic.to_string(), sender);
                receiver
            }
        };
        Ok(Subscription {
            receiver,
            buffer: self.0.buffer,
        })
    }

    /// Topics with at least one subscriber on this engine.
    pub fn topic_count(&self) -> usize {
        lock(&self.0.topics).len()
    }
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Delivery {
    Message(Message),
    /// The subscriber fell too far behind; the subscription is over.
    TooSlow {
        missed: u64,
        buffer: usize,
    },
    /// The broker is gone (engine shutting down).
    Closed,
}

pub struct Subscription {
    receiver: broadcast::Receiver<Message>,
    buffer: usize,
}

impl Subscription {
    pub async fn next(&mut self) -> Delivery {
        match self.receiver.recv().await {
            Ok(message) => Delivery::Message(message),
            Err(broadcast::error::RecvError::Lagged(missed)) => Delivery::TooSlow {
                missed,
                buffer: self.buffer,
            },
            Err(broadcast::error::RecvError::Closed) => Delivery::Closed,
        }
    }
}

/// 1-128 characters of `A-Z a-z 0-9 _ - . :`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC {
        return Err(format!(
            "topic names are 1-{MAX_TOPIC} characters; got {}",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "topic '{}' contains {c:?}; use A-Z a-z 0-9 _ - . :",
            topic.escape_debug()
        ));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_what_is_published_after_they_subscribe() {
        let broker = Broker::new(8, 1024);
        broker.publish("prices", r#"{"early":true}"#).unwrap();
        let mut a = broker.subscribe("prices").unwrap();
        let mut b = broker.subscribe("prices").unwrap();
        broker.publish("prices", r#"{"sku":"a"}"#).unwrap();
        broker.publish("other", r#"1"#).unwrap();
        for s in [&mut a, &mut b] {
            match s.next().await {
                Delivery::Message(m) => assert_eq!(*m, serde_json::json!({"sku": "a"})),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_and_the_publisher_never_waits() {
        let broker = Broker::new(4, 1024);
        let mut slow = broker.subscribe("t").unwrap();
        for i in 0..10 {
            broker.publish("t", &i.to_string()).unwrap();
        }
        match slow.next().await {
            Delivery::TooSlow { missed, buffer } => {
                assert_eq!(missed, 6);
                assert_eq!(buffer, 4);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn topics_without_subscribers_are_forgotten() {
        let broker = Broker::new(4, 1024);
        let s = broker.subscribe("t").unwrap();
        assert_eq!(broker.topic_count(), 1);
        drop(s);
        broker.publish("t", "1").unwrap();
        assert_eq!(broker.topic_count(), 0);
    }

    #[test]
    fn bad_topics_and_messages_are_refused_with_the_reason() {
        let broker = Broker::new(4, 16);
        let cases = [
            ("", "1", "1-128"),
            ("a b", "1", "contains ' '"),
            (&"x".repeat(129), "1", "1-128"),
            ("ok", "{not json", "not JSON"),
            ("ok", r#""0123456789abcdef""#, "limit is 16"),
        ];
        for (topic, message, expected) in cases {
            let PublishError::Invalid(e) = broker.publish(topic, message).unwrap_err();
            assert!(e.contains(expected), "{topic:?} {message:?}: {e}");
        }
        assert!(broker.publish("a.b:c-d_e", "null").is_ok());
    }
}
