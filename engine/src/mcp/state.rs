//! What the MCP endpoint needs of the engine, and nothing more: built once
//! by `http` (when `mcp.enabled`) and handed to the route [`router`]
//! mounts.

use std::sync::Arc;

use axum::Router;
use axum::routing::any;

use super::Mcp;
use crate::identity::access::AccessConfig;
use crate::request::transport::Transport;

/// Shared by the door's routes (axum's `State`).
pub type McpState = Arc<Shared>;

pub struct Shared {
    /// The `rmcp` service and its session slots.
    pub mcp: Mcp,
    /// Who may call which tool and prompt (and whether anonymous callers
    /// may open a session at all).
    pub access: Arc<AccessConfig>,
    pub transport: Transport,
}

/// `/mcp` (Streamable HTTP: POST, GET, DELETE).
pub fn router<S: Clone + Send + Sync + 'static>(state: McpState) -> Router<S> {
    Router::new()
        .route("/mcp", any(super::endpoint))
        .with_state(state)
}
