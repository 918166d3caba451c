//! What the MCP endpoint needs of the engine, and nothing more: built once
//! by `http` (when `mcp.enabled`) and handed to the route [`router`]
//! mounts.

use std::sync::Arc;

use axum::Router;
use axum::routing::any;

use super::Mcp;
use crate::identity::access::AccessConfig;
use crate::request::transport::Transport;

#[derive(Clone)]
pub struct McpState(Arc<Shared>);

pub struct Shared {
    /// The `rmcp` service and its session slots.
    pub mcp: Mcp,
    /// Who may call which tool and prompt (and whether anonymous callers
    /// may open a session at all).
    pub access: Arc<AccessConfig>,
    pub transport: Transport,
}

impl McpState {
    pub fn new(shared: Shared) -> Self {
        McpState(Arc::new(shared))
    }
}

impl std::ops::Deref for McpState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// `/mcp` (Streamable HTTP: POST, GET, DELETE).
pub fn router<S: Clone + Send + Sync + 'static>(state: McpState) -> Router<S> {
    Router::new()
        .route("/mcp", any(super::endpoint))
        .with_state(state)
}
