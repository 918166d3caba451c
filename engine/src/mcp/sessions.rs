//! MCP sessions, bounded: at most `mcp.max_sessions` at once, at most
//! `mcp.max_sessions_per_client` for one client (its principal, or its IP
//! when anonymous), and at most `mcp.sessions_per_minute` new ones per
//! client. Each session costs tens of kilobytes and two tasks for as long
//! as it lives (`mcp.session_idle_timeout_ms`), so without a bound ten
//! thousand anonymous `initialize` calls hold half a gigabyte.
//!
//! The endpoint reserves a slot ([`Sessions::reserve`]) before it hands an
//! `initialize` to `rmcp`; the slot is bound to the session `rmcp` creates
//! while serving that request (same task, so a task-local carries it) and
//! freed when the session closes — deleted, expired or failed: `rmcp` calls
//! `close_session` for all three. A slot never bound (the request was
//! refused on the way) frees itself when dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{
    RestoreOutcome, ServerSseMessage, SessionId,
};

use crate::request::buckets::LocalBuckets;

/// The bounds, from `[mcp]`.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub max_per_client: usize,
    pub per_minute: u32,
}

#[derive(Default)]
struct Table {
    live: usize,
    per_client: HashMap<Arc<str>, usize>,
    owners: HashMap<SessionId, Arc<str>>,
}

impl Table {
    fn release(&mut self, client: &Arc<str>) {
        self.live = self.live.saturating_sub(1);
        if let Some(n) = self.per_client.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(client);
            }
        }
    }
}

struct Shared {
    inner: LocalSessionManager,
    limits: SessionLimits,
    table: Mutex<Table>,
    created: LocalBuckets,
}

/// `rmcp`'s in-process session manager with the bounds around it.
#[derive(Clone)]
pub struct Sessions(Arc<Shared>);

/// Why a new session is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The engine holds `mcp.max_sessions` already.
    Full(usize),
    /// This client holds `mcp.max_sessions_per_client` already.
    ClientFull(usize),
    /// This client opened `mcp.sessions_per_minute` in the last minute.
    TooFast { per_minute: u32, wait: Duration },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Full(max) => write!(
                f,
                "the engine holds {max} MCP sessions (mcp.max_sessions); try again later"
            ),
            Refused::ClientFull(max) => write!(
                f,
                "this client holds {max} MCP sessions (mcp.max_sessions_per_client); \
                 end one (DELETE /mcp with its Mcp-Session-Id) or reuse it"
            ),
            Refused::TooFast { per_minute, .. } => write!(
                f,
                "this client opens more than {per_minute} MCP sessions a minute \
                 (mcp.sessions_per_minute)"
            ),
        }
    }
}

/// A reserved place for one session, counted until it is dropped unbound.
pub struct Slot {
    sessions: Sessions,
    client: Arc<str>,
    bound: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.bound {
            self.sessions.lock().release(&self.client);
        }
    }
}

tokio::task_local! {
    /// The slot of the `initialize` request this task is serving.
    static SLOT: RefCell<Option<Slot>>;
}

impl Sessions {
    pub fn new(inner: LocalSessionManager, limits: SessionLimits) -> Self {
        Sessions(Arc::new(Shared {
            inner,
            limits,
            table: Mutex::default(),
            created: LocalBuckets::default(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions open now.
    pub fn live(&self) -> usize {
        self.lock().live
    }

    /// A place for one more session of `client`, or why there is none.
    pub async fn reserve(&self, client: &str) -> Result<Slot, Refused> {
        let limits = self.0.limits;
        let interval_us = 60_000_000 / u64::from(limits.per_minute.max(1));
        let rate = self
            .0
            .created
            .take(client, interval_us, u64::from(limits.per_minute))
            .await;
        if !rate.allowed {
            return Err(Refused::TooFast {
                per_minute: limits.per_minute,
                wait: rate.wait,
            });
        }
        let client: Arc<str> = client.into();
        let mut table = self.lock();
        if table.live >= limits.max_sessions {
            return Err(Refused::Full(limits.max_sessions));
        }
        let mine = table.per_client.entry(client.clone()).or_default();
        if *mine >= limits.max_per_client {
            return Err(Refused::ClientFull(limits.max_per_client));
        }
        *mine += 1;
        table.live += 1;
        drop(table);
        Ok(Slot {
            sessions: self.clone(),
            client,
            bound: false,
        })
    }

    /// Runs `serve` with `slot` available to the session it creates.
    pub async fn with_slot<F: Future>(slot: Slot, serve: F) -> F::Output {
        SLOT.scope(RefCell::new(Some(slot)), serve).await
    }
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.0.inner.create_session().await?;
        let slot = SLOT.try_with(|s| s.borrow_mut().take()).ok().flatten();
        let client = match slot {
            Some(mut slot) => {
                slot.bound = true;
                slot.client.clone()
            }
            // Every `initialize` reaches rmcp through the endpoint, which
            // reserves first; count one that did not anyway.
            None => {
                let client: Arc<str> = "-".into();
                let mut table = self.lock();
                table.live += 1;
                *table.per_client.entry(client.clone()).or_default() += 1;
                client
            }
        };
        tracing::debug!(session = %id, client = %client, "MCP session opened");
        self.lock().owners.insert(id.clone(), client);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.0.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.0.inner.has_session(id).await
    }

    /// Called for a DELETE, and by `rmcp` when a session's worker ends
    /// (idle expiry, a failed handshake, an error); the second call for one
    /// session finds nothing to release.
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.0.inner.close_session(id).await;
        let mut table = self.lock();
        if let Some(client) = table.owners.remove(id) {
            table.release(&client);
            crate::memory::note_released();
            tracing::debug!(session = %id, client = %client, "MCP session closed");
        }
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.0.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.inner.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.0.inner.restore_session(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(max: usize, per_client: usize, per_minute: u32) -> Sessions {
        Sessions::new(
            LocalSessionManager::default(),
            SessionLimits {
                max_sessions: max,
                max_per_client: per_client,
                per_minute,
            },
        )
    }

    #[tokio::test]
    async fn slots_are_bounded_in_total_per_client_and_per_minute() {
        let s = sessions(3, 2, 1000);
        let a1 = s.reserve("a").await.unwrap();
        let _a2 = s.reserve("a").await.unwrap();
        assert_eq!(s.reserve("a").await.err(), Some(Refused::ClientFull(2)));
        let _b1 = s.reserve("b").await.unwrap();
        assert_eq!(s.reserve("c").await.err(), Some(Refused::Full(3)));
        drop(a1);
        assert_eq!(s.live(), 2, "an unbound slot frees itself");
        let _c1 = s.reserve("c").await.unwrap();

        let s = sessions(100, 100, 2);
        let _x = s.reserve("x").await.unwrap();
        let _y = s.reserve("x").await.unwrap();
        assert!(matches!(
            s.reserve("x").await.err(),
            Some(Refused::TooFast { per_minute: 2, .. })
        ));
        assert!(s.reserve("y").await.is_ok(), "the rate is per client");
    }

    #[tokio::test]
    async fn a_bound_slot_lives_until_its_session_closes() {
        let s = sessions(10, 10, 1000);
        let slot = s.reserve("a").await.unwrap();
        let (id, _transport) = Sessions::with_slot(slot, s.create_session()).await.unwrap();
        assert_eq!(s.live(), 1, "bound: still counted after the request");
        s.close_session(&id).await.unwrap();
        assert_eq!(s.live(), 0);
        s.close_session(&id).await.unwrap();
        assert_eq!(s.live(), 0, "a second close releases nothing");
    }
}
