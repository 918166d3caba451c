//! Model Context Protocol: plugins declare tools and prompts; the host
//! serves them to AI clients at `/mcp` over Streamable HTTP, on the
//! official Rust SDK (`rmcp`).
//!
//! - [`decl`]: one plugin's declarations, checked, schemas compiled (pure).
//! - [`catalog`]: every plugin's tools and prompts as one catalog, per snapshot.
//! - [`server`]: the `rmcp` handler: lists, argument checks, calls, progress,
//!   logging and list-change notifications.
//!
//! Protocol versions 2025-06-18 and 2025-11-25 run in sessions
//! (`Mcp-Session-Id`, a standing event stream for notifications); the
//! 2026-07-28 revision is stateless. `rmcp` negotiates the version and
//! checks `MCP-Protocol-Version`; the `Host` and `Origin` guards come from
//! `[mcp]` in the config.

pub mod catalog;
pub mod decl;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use catalog::Catalog;

use crate::config::McpConfig;
use crate::registry::Registry;

/// The tower service mounted at `/mcp`.
pub type McpService = StreamableHttpService<server::KilnMcp, LocalSessionManager>;

pub fn service(
    registry: Arc<Registry>,
    access: Arc<crate::identity::access::AccessConfig>,
    config: &McpConfig,
    max_body: usize,
) -> McpService {
    let mut http = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(
            (config.sse_keep_alive_ms > 0).then(|| Duration::from_millis(config.sse_keep_alive_ms)),
        )
        .with_max_request_body_bytes(max_body);
    http = if config.allowed_hosts.iter().any(|h| h == "*") {
        http.disable_allowed_hosts()
    } else {
        http.with_allowed_hosts(config.allowed_hosts.clone())
    };
    // Validate Origin even when the list is empty: browsers always send
    // one, so a page from an unlisted origin (the DNS-rebinding case) is
    // refused while command-line and server-side clients, which send none,
    // pass.
    http = http
        .with_allowed_origins(config.allowed_origins.clone())
        .enforce_origin_validation();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive =
        Some(Duration::from_millis(config.session_idle_timeout_ms));
    StreamableHttpService::new(
        move || Ok(server::KilnMcp::new(registry.clone(), access.clone())),
        Arc::new(sessions),
        http,
    )
}

/// `/mcp`: the `rmcp` service. A GET opens a session's standing event
/// stream, which never ends by itself: at shutdown its body ends between
/// two events, so the client sees the stream finish and the server's wait
/// for open connections is short. POSTs are calls in flight and run to
/// their answer (bounded by the shutdown grace period). Not cancelling
/// rmcp's own token is deliberate: that would cancel the calls too.
pub async fn endpoint(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use futures_util::StreamExt;
    use tower::ServiceExt;

    let Some(mcp) = state.mcp.clone() else {
        // The router mounts this handler only when MCP is enabled.
        return axum::response::IntoResponse::into_response(
            crate::http::error::ApiError::not_found(request.uri().path()),
        );
    };
    let standing = request.method() == axum::http::Method::GET;
    let response = match mcp.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if !standing {
        return response.map(axum::body::Body::new);
    }
    let (parts, body) = response.into_parts();
    let frames =
        http_body_util::BodyStream::new(body).take_until(state.shutdown.clone().cancelled_owned());
    axum::response::Response::from_parts(
        parts,
        axum::body::Body::new(http_body_util::StreamBody::new(frames)),
    )
}
