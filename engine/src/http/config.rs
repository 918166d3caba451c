//! `[http]`: the HTTP server's own section of `kiln.toml`.

use serde::Deserialize;

use crate::config::{ByteSize, ConfigError, Section, at_least, invalid};

/// `[http]`: the HTTP server's limits, timeouts and headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted; larger → 413.
    pub max_request_body: ByteSize,
    /// Largest response body a plugin may return; larger → 500 naming the plugin.
    pub max_response_body: ByteSize,
    /// Largest total size of a request's headers; larger → 431.
    pub max_header_bytes: ByteSize,
    /// A request whose response has not started by then gets 504.
    pub request_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C: how long requests in flight get to finish
    /// (subscriptions and event streams are ended at once) before the
    /// connections still open are cut.
    pub shutdown_grace_ms: u64,
    /// Send `Strict-Transport-Security` (set when clients reach the engine
    /// over HTTPS, through a TLS-terminating proxy).
    pub hsts: bool,
    /// Cross-origin calls from browsers; none unless origins are listed.
    pub cors: super::hardening::CorsConfig,
    /// The header that holds the client IP (`x-forwarded-for`) when a
    /// proxy in front sets it; otherwise the socket's peer address.
    pub client_ip_header: Option<String>,
    /// A client must send a request's headers within this time, counted
    /// from the connection's start or, on HTTP/1.1 keep-alive, from the end
    /// of the previous response (so it is also HTTP/1.1's idle limit).
    pub header_read_timeout_ms: u64,
    /// A connection without a request in flight for this long is closed
    /// (HTTP/2 connections; HTTP/1.1 ones meet the header timeout first).
    pub idle_timeout_ms: u64,
    /// Connections open at once. At the limit, the connection idle the
    /// longest is closed to make room; when none is idle the new one gets
    /// 503. Unset: three quarters of the open-file limit, at most 10,000.
    pub max_connections: Option<usize>,
    /// Requests one HTTP/2 connection may run at once.
    pub max_streams_per_connection: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_request_body: ByteSize(1024 * 1024),
            max_response_body: ByteSize(8 * 1024 * 1024),
            max_header_bytes: ByteSize(32 * 1024),
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            hsts: false,
            cors: Default::default(),
            client_ip_header: None,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: None,
            max_streams_per_connection: 100,
        }
    }
}

impl Section for HttpConfig {
    const KEY: &'static str = "http";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_header_bytes.0 < 1024 || self.max_header_bytes.0 > 1 << 20 {
            return Err(invalid(
                "http.max_header_bytes",
                "must be between 1KiB and 1MiB",
            ));
        }
        at_least(
            100,
            &[
                ("http.header_read_timeout_ms", self.header_read_timeout_ms),
                ("http.idle_timeout_ms", self.idle_timeout_ms),
            ],
        )?;
        if self.max_connections == Some(0) {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        at_least(
            1,
            &[(
                "http.max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            )],
        )?;
        at_least(100, &[("http.request_timeout_ms", self.request_timeout_ms)])?;
        self.cors.validate().map_err(|m| invalid("http.cors", &m))?;
        if self.max_request_body.0 > usize::MAX as u64 {
            return Err(invalid("http.max_request_body", "is too large"));
        }
        Ok(())
    }
}

impl HttpConfig {
    /// The request body limit in bytes.
    pub fn max_request_body(&self) -> usize {
        usize::try_from(self.max_request_body.0).unwrap_or(usize::MAX)
    }

    /// The response body limit in bytes.
    pub fn max_response_body(&self) -> usize {
        usize::try_from(self.max_response_body.0).unwrap_or(usize::MAX)
    }
}
