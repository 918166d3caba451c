//! Long-lived streams, bounded: GraphQL WebSockets, GraphQL event streams
//! and MCP's standing event streams count against `[streams] max_open`
//! (all clients) and `max_open_per_client`; subscriptions, on whatever
//! transport, against `max_subscriptions_per_client`. A client is its
//! principal when it has one, its IP otherwise. Each stream holds a task,
//! buffers and a place in a topic for as long as the client likes, so
//! without a bound 200 sockets with 100 subscriptions each hold 140 MB.
//!
//! A place is held by a [`Held`] and given back when it is dropped, which
//! is when the stream ends, however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// `[streams]` in the engine config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamLimits {
    /// WebSockets and event streams open at once, all clients together.
    pub max_open: usize,
    /// WebSockets and event streams one client holds at once.
    pub max_open_per_client: usize,
    /// Subscriptions one client runs at once, over all its streams.
    pub max_subscriptions_per_client: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_open: 10_000,
            max_open_per_client: 100,
            max_subscriptions_per_client: 1_000,
        }
    }
}

impl crate::config::Section for StreamLimits {
    const KEY: &'static str = "streams";

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        StreamLimits::validate(self).map_err(|m| crate::config::invalid("streams", &m))
    }
}

impl StreamLimits {
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("streams.max_open", self.max_open),
            ("streams.max_open_per_client", self.max_open_per_client),
            (
                "streams.max_subscriptions_per_client",
                self.max_subscriptions_per_client,
            ),
        ] {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// What a place is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WebSocket or an event stream.
    Stream,
    Subscription,
}

/// Why a place is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `streams.max_open` are open.
    Full(usize),
    /// This client holds `streams.max_open_per_client` streams.
    ClientStreams(usize),
    /// This client runs `streams.max_subscriptions_per_client` subscriptions.
    ClientSubscriptions(usize),
}

impl Refused {
    /// 503 when the engine is full, 429 when the client is.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            Refused::Full(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            _ => axum::http::StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Full(max) => write!(
                f,
                "the engine holds {max} WebSockets and event streams (streams.max_open); \
                 try again later"
            ),
            Refused::ClientStreams(max) => write!(
                f,
                "this client holds {max} WebSockets and event streams \
                 (streams.max_open_per_client); close one first"
            ),
            Refused::ClientSubscriptions(max) => write!(
                f,
                "this client runs {max} subscriptions (streams.max_subscriptions_per_client); \
                 complete one first"
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    streams: usize,
    subscriptions: usize,
}

#[derive(Default)]
struct Table {
    streams: usize,
    clients: HashMap<Arc<str>, Counts>,
}

/// The places taken now.
#[derive(Clone, Default)]
pub struct StreamSlots {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    limits: StreamLimits,
    table: Mutex<Table>,
}

/// A place, given back on drop.
pub struct Held {
    slots: StreamSlots,
    client: Arc<str>,
    kind: Kind,
}

impl Drop for Held {
    fn drop(&mut self) {
        crate::memory::note_released();
        let mut table = self.slots.lock();
        if self.kind == Kind::Stream {
            table.streams = table.streams.saturating_sub(1);
        }
        if let Some(counts) = table.clients.get_mut(&self.client) {
            match self.kind {
                Kind::Stream => counts.streams = counts.streams.saturating_sub(1),
                Kind::Subscription => counts.subscriptions = counts.subscriptions.saturating_sub(1),
            }
            if counts.streams == 0 && counts.subscriptions == 0 {
                table.clients.remove(&self.client);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(limits: StreamLimits) -> Self {
        StreamSlots {
            inner: Arc::new(Inner {
                limits,
                table: Mutex::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.lock().streams
    }

    /// Takes a place of `kind` for `client`.
    pub fn take(&self, client: &str, kind: Kind) -> Result<Held, Refused> {
        let limits = &self.inner.limits;
        let mut table = self.lock();
        if kind == Kind::Stream && table.streams >= limits.max_open {
            return Err(Refused::Full(limits.max_open));
        }
        let client: Arc<str> = client.into();
        let counts = table.clients.entry(client.clone()).or_default();
        match kind {
            Kind::Stream if counts.streams >= limits.max_open_per_client => {
                return Err(Refused::ClientStreams(limits.max_open_per_client));
            }
            Kind::Subscription if counts.subscriptions >= limits.max_subscriptions_per_client => {
                return Err(Refused::ClientSubscriptions(
                    limits.max_subscriptions_per_client,
                ));
            }
            Kind::Stream => counts.streams += 1,
            Kind::Subscription => counts.subscriptions += 1,
        }
        if kind == Kind::Stream {
            table.streams += 1;
        }
        drop(table);
        Ok(Held {
            slots: self.clone(),
            client,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let slots = StreamSlots::new(StreamLimits {
            max_open: 3,
            max_open_per_client: 2,
            max_subscriptions_per_client: 1,
        });
        let a1 = slots.take("a", Kind::Stream).unwrap();
        let _a2 = slots.take("a", Kind::Stream).unwrap();
        assert_eq!(
            slots.take("a", Kind::Stream).err(),
            Some(Refused::ClientStreams(2))
        );
        let _b = slots.take("b", Kind::Stream).unwrap();
        assert_eq!(slots.take("c", Kind::Stream).err(), Some(Refused::Full(3)));
        let s = slots.take("a", Kind::Subscription).unwrap();
        assert_eq!(
            slots.take("a", Kind::Subscription).err(),
            Some(Refused::ClientSubscriptions(1))
        );
        drop(s);
        assert!(slots.take("a", Kind::Subscription).is_ok());
        drop(a1);
        assert_eq!(slots.open(), 2);
        assert!(slots.take("c", Kind::Stream).is_ok());
        assert_eq!(Refused::Full(1).status().as_u16(), 503);
    }
}
