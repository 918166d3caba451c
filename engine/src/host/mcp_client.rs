//! `kiln:plugin/mcp-client`: progress and log messages from a running tool
//! call to the MCP client that made it. The import only queues; the MCP
//! server forwards the queue to the client while the call runs. Bounded
//! and lossy on purpose: a guest can never block on a slow client or
//! flood it, and progress that does not grow is dropped as the spec asks.

use tokio::sync::mpsc;

use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::mcp_client::{Host, Level, add_to_linker};
use crate::runtime::state::CallState;

/// The `kiln:plugin/mcp-client` capability: a call's link to its client,
/// when an MCP tool call has one.
pub struct McpClient;

impl Capability for McpClient {
    type Scope = ();
    type Call = Option<ClientLink>;

    fn new(_: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(McpClient)
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, _: &PluginFacts<'_>) -> Result<(), String> {
        Ok(())
    }

    fn begin(_: &(), start: &mut CallStart<'_>) -> Option<ClientLink> {
        start.handoff.client.take()
    }

    /// The MCP server reads the link's channel until every sender is gone.
    fn end(call: &mut Option<ClientLink>) {
        *call = None;
    }
}

/// Messages one call may queue before further ones are dropped.
pub const QUEUE: usize = 64;
/// Messages one call may send in total.
const MAX_MESSAGES_PER_CALL: u32 = 1_000;
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// What a call tells its client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Progress {
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    Log {
        level: Level,
        message: String,
    },
}

/// The sending end a call's store holds.
pub struct ClientLink {
    tx: mpsc::Sender<ClientMessage>,
    /// The client asked for progress (sent a progress token).
    wants_progress: bool,
    last_progress: Option<f64>,
    budget: u32,
}

impl ClientLink {
    pub fn new(tx: mpsc::Sender<ClientMessage>, wants_progress: bool) -> Self {
        ClientLink {
            tx,
            wants_progress,
            last_progress: None,
            budget: MAX_MESSAGES_PER_CALL,
        }
    }

    fn send(&mut self, message: ClientMessage) {
        if self.budget == 0 {
            return;
        }
        self.budget -= 1;
        // Full: the client is slow; dropping beats stalling the guest.
        let _ = self.tx.try_send(message);
    }

    fn progress(&mut self, progress: f64, total: Option<f64>, message: Option<String>) {
        let grows = self.last_progress.is_none_or(|last| progress > last);
        if !self.wants_progress || !progress.is_finite() || !grows {
            return;
        }
        if total.is_some_and(|t| !t.is_finite()) {
            return;
        }
        self.last_progress = Some(progress);
        self.send(ClientMessage::Progress {
            progress,
            total,
            message: message.map(cut),
        });
    }
}

fn cut(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        message
    } else {
        crate::text::cut(&message, MAX_MESSAGE_BYTES).to_string()
    }
}

impl Host for View<'_, McpClient> {
    fn report_progress(
        &mut self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        if let Some(link) = self.call.as_mut() {
            link.progress(progress, total, message);
        }
        Ok(())
    }

    fn notify(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if let Some(link) = self.call.as_mut() {
            link.send(ClientMessage::Log {
                level,
                message: cut(message),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_must_grow_and_be_wanted() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut link = ClientLink::new(tx, true);
        link.progress(0.0, Some(100.0), None);
        link.progress(0.0, Some(100.0), None); // not growing: dropped
        link.progress(f64::NAN, None, None);
        link.progress(50.0, Some(f64::INFINITY), None);
        link.progress(50.0, Some(100.0), Some("half".into()));
        let got: Vec<f64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| match m {
                ClientMessage::Progress { progress, .. } => progress,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, vec![0.0, 50.0]);

        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut link = ClientLink::new(tx, false);
        link.progress(1.0, None, None);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut link = ClientLink::new(tx, true);
        for i in 0..10 {
            link.send(ClientMessage::Log {
                level: Level::Info,
                message: i.to_string(),
            });
        }
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 2);
    }
}
