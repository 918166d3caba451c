//! Who a request comes from, as far as bounded resources go: its client IP
//! (from `http.client_ip_header` behind a proxy, else the socket's peer),
//! and the key an MCP session or a stream is counted against — the
//! principal when the request has one, its IP otherwise.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderName;

use crate::identity::Caller;

/// Where a request's client IP comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientIps {
    /// The header that holds it, when a proxy in front sets one.
    header: Option<HeaderName>,
}

impl ClientIps {
    /// `header` is `http.client_ip_header`; an error names the key.
    pub fn new(header: Option<&str>) -> Result<ClientIps, String> {
        let header = header
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("http.client_ip_header {h:?} is not a header name"))
            })
            .transpose()?;
        Ok(ClientIps { header })
    }

    /// The client's IP: from the configured header when present (its
    /// first entry), else the socket's peer.
    pub fn ip(&self, request: &Request) -> String {
        if let Some(name) = &self.header
            && let Some(first) = request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        {
            return first.to_string();
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Who a bounded resource (an MCP session, a stream) is counted
    /// against: the principal when the request has one, its IP otherwise.
    pub fn key(&self, request: &Request) -> String {
        match request
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.principal())
        {
            Some(p) => format!("principal:{}", p.subject),
            None => format!("ip:{}", self.ip(request)),
        }
    }
}
