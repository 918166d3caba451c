//! `[mcp]`: the MCP endpoint's section of `kiln.toml`.

use serde::Deserialize;

use crate::config::{ConfigError, Section, at_least, invalid};

/// The MCP endpoint (`/mcp`, Streamable HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve MCP at `/mcp`. When off, `/mcp` answers 404.
    pub enabled: bool,
    /// `Host` header values accepted at `/mcp`, as host names or
    /// `host:port`: the DNS-rebinding guard. The default admits loopback
    /// names only; a public deployment lists its own names here. `["*"]`
    /// admits any host (behind a proxy that checks it).
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`, `:*` for any port) allowed
    /// at `/mcp`. A request carrying any other `Origin` gets 403; requests
    /// without one (non-browser clients) pass. The default admits pages
    /// served from loopback (a local MCP inspector), nothing else.
    pub allowed_origins: Vec<String>,
    /// A client of the session-based protocol versions (2025-06-18,
    /// 2025-11-25) that stays silent this long loses its session.
    pub session_idle_timeout_ms: u64,
    /// Interval of keep-alive comments on open event streams (0 = none).
    pub sse_keep_alive_ms: u64,
    /// Sessions open at once, all clients together; past it `initialize`
    /// gets 503.
    pub max_sessions: usize,
    /// Sessions one client (its principal, or its IP when anonymous) holds
    /// at once; past it `initialize` gets 429.
    pub max_sessions_per_client: usize,
    /// New sessions one client may open per minute; past it 429.
    pub sessions_per_minute: u32,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: true,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .flat_map(|h| [format!("http://{h}:*"), format!("https://{h}:*")])
                .collect(),
            session_idle_timeout_ms: 300_000,
            sse_keep_alive_ms: 15_000,
            max_sessions: 2_000,
            max_sessions_per_client: 50,
            sessions_per_minute: 60,
        }
    }
}

impl Section for McpConfig {
    const KEY: &'static str = "mcp";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.allowed_hosts.is_empty() {
            return Err(invalid(
                "mcp.allowed_hosts",
                "must name at least one host (or be [\"*\"] to admit any)",
            ));
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| *o != "null" && !o.starts_with("http://") && !o.starts_with("https://"))
        {
            return Err(invalid(
                "mcp.allowed_origins",
                &format!("{bad:?} must start with http:// or https:// (or be \"null\")"),
            ));
        }
        at_least(
            1,
            &[
                ("mcp.max_sessions", self.max_sessions as u64),
                (
                    "mcp.max_sessions_per_client",
                    self.max_sessions_per_client as u64,
                ),
                (
                    "mcp.sessions_per_minute",
                    u64::from(self.sessions_per_minute),
                ),
            ],
        )?;
        if self.session_idle_timeout_ms == 0 {
            return Err(invalid(
                "mcp.session_idle_timeout_ms",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}
