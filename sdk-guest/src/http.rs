//! Outbound HTTP: a small, blocking client on the standard
//! `wasi:http/outgoing-handler` interface.
//!
//! ```ignore
//! use kiln_sdk::{Request, Response, Result, http};
//! use std::time::Duration;
//!
//! fn weather(req: Request) -> Result<Response> {
//!     let city = req.param("city").unwrap_or("Oslo");
//!     let upstream = http::Request::get(format!("https://api.example.com/weather/{city}"))
//!         .header("accept", "application/json")
//!         .timeout(Duration::from_secs(5))
//!         .send()?;
//!     let forecast: serde_json::Value = upstream.json()?;
//!     Response::json(&forecast)
//! }
//! ```
//!
//! The host sends a request only to the hosts listed in the plugin's
//! settings (`[outbound] allowed_hosts`); any other is refused with
//! [`FetchError::Denied`]. A call blocks the plugin until the whole response
//! body has arrived; the plugin's call timeout bounds it, and
//! [`Request::timeout`] can make a slow host fail sooner.
//!
//! [`FetchError`] converts into [`crate::Error`], so a handler can use `?`:
//!
//! | `FetchError`                      | `ErrorCode`   | HTTP |
//! |-----------------------------------|---------------|------|
//! | `Denied`                          | `Forbidden`   | 403  |
//! | `Timeout`, `Network`              | `Unavailable` | 503  |
//! | `InvalidUrl`, `InvalidRequest`, `Decode` | `Internal` | 500 |
//!
//! A plugin that fetches a URL its client gave it may prefer to answer an
//! [`FetchError::InvalidUrl`] with [`crate::Error::bad_request`] itself.
//!
//! Any status the server answers with (404, 500, …) is a successful fetch:
//! look at [`Response::status`] or [`Response::is_success`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    self as wasi_http, ErrorCode, FutureIncomingResponse, HeaderError, IncomingResponse,
    OutgoingBody, OutgoingRequest, RequestOptions,
};
use wasi::io::streams::StreamError;

use crate::{Error, ErrorCode as KilnErrorCode, Method};

/// The most a single `blocking-write-and-flush` may be given (WASI 0.2).
const WRITE_CHUNK: usize = 4096;
/// How much of the response body to ask for per read.
const READ_CHUNK: u64 = 64 * 1024;

/// An outbound request, built up and then [sent](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    /// A builder step that failed (e.g. [`Request::json`]); reported by `send`.
    error: Option<FetchError>,
}

impl Request {
    /// A request with any method to an `http://` or `https://` URL.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            error: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Adds a header (repeat for several values). `Host`, `Connection`,
    /// `Transfer-Encoding` and other hop-by-hop headers are the host's to
    /// set; `send` refuses them. `Content-Length` is set from the body.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON and, unless already set,
    /// `Content-Type: application/json`. A value that does not encode makes
    /// `send` fail with [`FetchError::InvalidRequest`].
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body;
                if !self.has_header("content-type") {
                    self = self.header("content-type", "application/json");
                }
            }
            Err(e) => {
                self.error = Some(FetchError::InvalidRequest(format!(
                    "the JSON body did not encode: {e}"
                )));
            }
        }
        self
    }

    /// Gives up when connecting, waiting for the first byte of the response,
    /// or waiting between two bytes of it takes longer than `timeout` (the
    /// `wasi:http` connect, first-byte and between-bytes timeouts). Without
    /// it the host's defaults apply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and waits for the whole response; see [`send`].
    pub fn send(self) -> Result<Response, FetchError> {
        send(self)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

/// A response: status, headers and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Headers with lower-case names, in the order received; values that are
    /// not UTF-8 are decoded lossily.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, FetchError> {
        std::str::from_utf8(&self.body).map_err(|e| {
            FetchError::Decode(format!(
                "the response body (status {}) is not UTF-8 text: {e}",
                self.status
            ))
        })
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            FetchError::Decode(format!(
                "the response body (status {}) is not the expected JSON: {e}",
                self.status
            ))
        })
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL cannot be fetched: not `http://` or `https://`, no host, a bad
    /// port, ….
    InvalidUrl { url: String, reason: String },
    /// The request could not be built: a header the host does not let a
    /// plugin set, a malformed header or method, a body that did not encode.
    InvalidRequest(String),
    /// The host refused to send it: `host` (`name[:port]`, as in the URL) is
    /// not in the plugin's `[outbound] allowed_hosts`.
    Denied { host: String },
    /// A DNS lookup, the connection, or the response took too long.
    Timeout { host: String, detail: String },
    /// The request failed on the way: DNS, connection, TLS, or the HTTP
    /// exchange itself.
    Network { host: String, detail: String },
    /// The response arrived but its body is not what [`Response::text`] or
    /// [`Response::json`] expected.
    Decode(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            FetchError::InvalidRequest(why) => write!(f, "invalid outbound request: {why}"),
            FetchError::Denied { host } => write!(
                f,
                "the host refused the request: {host} is not in this plugin's [outbound] allowed_hosts"
            ),
            FetchError::Timeout { host, detail } => {
                write!(f, "request to {host} timed out: {detail}")
            }
            FetchError::Network { host, detail } => write!(f, "request to {host} failed: {detail}"),
            FetchError::Decode(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FetchError {}

impl From<FetchError> for Error {
    fn from(e: FetchError) -> Self {
        let code = match &e {
            FetchError::Denied { .. } => KilnErrorCode::Forbidden,
            FetchError::Timeout { .. } | FetchError::Network { .. } => KilnErrorCode::Unavailable,
            FetchError::InvalidUrl { .. }
            | FetchError::InvalidRequest(_)
            | FetchError::Decode(_) => KilnErrorCode::Internal,
        };
        Error::new(code, e.to_string())
    }
}

/// `GET url`, with no extra headers; see [`send`].
pub fn get(url: impl Into<String>) -> Result<Response, FetchError> {
    send(Request::get(url))
}

/// Sends `request` and blocks until the whole response has arrived.
pub fn send(request: Request) -> Result<Response, FetchError> {
    if let Some(e) = request.error {
        return Err(e);
    }
    let target = parse_url(&request.url)?;
    let host = target.authority.as_str();

    let headers = wasi_http::Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| header_error(name, value, e))?;
    }
    let sends_body = !request.body.is_empty()
        || matches!(request.method, Method::Post | Method::Put | Method::Patch);
    if sends_body && !request.has_header("content-length") {
        headers
            .append("content-length", request.body.len().to_string().as_bytes())
            .map_err(|e| header_error("content-length", "", e))?;
    }

    let outgoing = OutgoingRequest::new(headers);
    let method = wasi_method(&request.method);
    outgoing.set_method(&method).map_err(|()| {
        FetchError::InvalidRequest(format!("{method:?} is not a valid HTTP method"))
    })?;
    let scheme = if target.https {
        wasi_http::Scheme::Https
    } else {
        wasi_http::Scheme::Http
    };
    outgoing
        .set_scheme(Some(&scheme))
        .and_then(|()| outgoing.set_authority(Some(host)))
        .and_then(|()| outgoing.set_path_with_query(Some(&target.path_with_query)))
        .map_err(|()| {
            invalid_url(
                &request.url,
                "the host did not accept it as a request target",
            )
        })?;

    // Taken before `handle`: once the request is handed over, only the body
    // stream can still feed it.
    let body = if request.body.is_empty() {
        None
    } else {
        Some(
            outgoing
                .body()
                .map_err(|()| FetchError::InvalidRequest("the request body was taken".into()))?,
        )
    };
    let options = request.timeout.map(request_options).transpose()?;

    let future = outgoing_handler::handle(outgoing, options).map_err(|e| from_code(host, e))?;
    if let Some(body) = body
        && let Err(write_error) = write_body(body, &request.body, host)
    {
        // A refused or failed request closes the body stream: the future
        // then holds the real reason. A server may also answer before it has
        // read the whole body; that answer is the response.
        return match wait(&future, host) {
            Ok(response) => read_response(response, host),
            Err(FetchError::Network { .. }) => Err(write_error),
            Err(e) => Err(e),
        };
    }
    let response = wait(&future, host)?;
    read_response(response, host)
}

fn request_options(timeout: Duration) -> Result<RequestOptions, FetchError> {
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    options
        .set_connect_timeout(Some(nanos))
        .and_then(|()| options.set_first_byte_timeout(Some(nanos)))
        .and_then(|()| options.set_between_bytes_timeout(Some(nanos)))
        .map_err(|()| {
            FetchError::InvalidRequest("the host does not support request timeouts".into())
        })?;
    Ok(options)
}

/// Streams `data` into the request body and finishes it.
fn write_body(body: OutgoingBody, data: &[u8], host: &str) -> Result<(), FetchError> {
    {
        // The stream is a child of the body: it must be gone before `finish`.
        let stream = body
            .write()
            .map_err(|()| FetchError::InvalidRequest("the request body stream was taken".into()))?;
        for chunk in data.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| stream_error(host, "sending the request body", e))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| from_code(host, e))
}

/// Blocks until the response head has arrived.
fn wait(future: &FutureIncomingResponse, host: &str) -> Result<IncomingResponse, FetchError> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(from_code(host, code)),
            Some(Err(())) => {
                return Err(FetchError::Network {
                    host: host.to_string(),
                    detail: "the response was already taken".into(),
                });
            }
            None => future.subscribe().block(),
        }
    }
}

/// Reads the status, headers and the whole body.
fn read_response(response: IncomingResponse, host: &str) -> Result<Response, FetchError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let incoming = response.consume().map_err(|()| FetchError::Network {
        host: host.to_string(),
        detail: "the response body was already taken".into(),
    })?;
    let mut body = Vec::new();
    {
        // The stream is a child of the body: it must be gone first.
        let stream = incoming.stream().map_err(|()| FetchError::Network {
            host: host.to_string(),
            detail: "the response body stream was already taken".into(),
        })?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(host, "reading the response body", e)),
            }
        }
    }
    drop(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn wasi_method(method: &Method) -> wasi_http::Method {
    match method {
        Method::Get => wasi_http::Method::Get,
        Method::Post => wasi_http::Method::Post,
        Method::Put => wasi_http::Method::Put,
        Method::Patch => wasi_http::Method::Patch,
        Method::Delete => wasi_http::Method::Delete,
        Method::Head => wasi_http::Method::Head,
        Method::Options => wasi_http::Method::Options,
        Method::Other(m) => wasi_http::Method::Other(m.clone()),
    }
}

fn header_error(name: &str, value: &str, e: HeaderError) -> FetchError {
    FetchError::InvalidRequest(match e {
        HeaderError::Forbidden => {
            format!("header {name:?} may not be set by a plugin (the host sets it)")
        }
        HeaderError::InvalidSyntax => {
            format!("header {name:?}: {value:?} is not a valid header name and value")
        }
        HeaderError::Immutable => format!("header {name:?} could not be set"),
    })
}

fn stream_error(host: &str, doing: &str, e: StreamError) -> FetchError {
    match e {
        StreamError::Closed => FetchError::Network {
            host: host.to_string(),
            detail: format!("the connection closed while {doing}"),
        },
        StreamError::LastOperationFailed(io) => match wasi_http::http_error_code(&io) {
            Some(code) => from_code(host, code),
            None => FetchError::Network {
                host: host.to_string(),
                detail: format!("{doing} failed: {}", io.to_debug_string()),
            },
        },
    }
}

/// Sorts a `wasi:http` error code into a [`FetchError`] with a readable detail.
fn from_code(host: &str, code: ErrorCode) -> FetchError {
    let host = host.to_string();
    let detail = match code {
        ErrorCode::HttpRequestDenied => return FetchError::Denied { host },
        ErrorCode::DnsTimeout => "the DNS lookup timed out".to_string(),
        ErrorCode::ConnectionTimeout => "no connection within the connect timeout".into(),
        ErrorCode::ConnectionReadTimeout => "reading from the connection timed out".into(),
        ErrorCode::ConnectionWriteTimeout => "writing to the connection timed out".into(),
        ErrorCode::HttpResponseTimeout => "no response within the first-byte timeout".into(),
        ErrorCode::HttpRequestMethodInvalid => {
            return FetchError::InvalidRequest("the method is not valid".into());
        }
        ErrorCode::HttpRequestUriInvalid => {
            return FetchError::InvalidRequest(format!("the URL for {host} is not valid"));
        }
        ErrorCode::HttpRequestUriTooLong => {
            return FetchError::InvalidRequest(format!("the URL for {host} is too long"));
        }
        other => {
            return FetchError::Network {
                host,
                detail: describe(&other),
            };
        }
    };
    FetchError::Timeout { host, detail }
}

fn describe(code: &ErrorCode) -> String {
    fn size<T: fmt::Display>(what: &str, n: &Option<T>) -> String {
        match n {
            Some(n) => format!("{what} ({n})"),
            None => what.to_string(),
        }
    }
    match code {
        ErrorCode::DnsTimeout => "the DNS lookup timed out".into(),
        ErrorCode::DnsError(p) => {
            let mut s = "the DNS lookup failed".to_string();
            if let Some(rcode) = &p.rcode {
                s.push_str(&format!(": {rcode}"));
            }
            if let Some(info) = p.info_code {
                s.push_str(&format!(" (info code {info})"));
            }
            s
        }
        ErrorCode::DestinationNotFound => "the host name does not resolve".into(),
        ErrorCode::DestinationUnavailable => "the destination is unavailable".into(),
        ErrorCode::DestinationIpProhibited => "the destination IP address is prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "the destination IP address is unroutable".into(),
        ErrorCode::ConnectionRefused => "the connection was refused".into(),
        ErrorCode::ConnectionTerminated => "the connection closed unexpectedly".into(),
        ErrorCode::ConnectionTimeout => "no connection within the connect timeout".into(),
        ErrorCode::ConnectionReadTimeout => "reading from the connection timed out".into(),
        ErrorCode::ConnectionWriteTimeout => "writing to the connection timed out".into(),
        ErrorCode::ConnectionLimitReached => "too many open connections".into(),
        ErrorCode::TlsProtocolError => "the TLS handshake failed".into(),
        ErrorCode::TlsCertificateError => "the server's TLS certificate was not accepted".into(),
        ErrorCode::TlsAlertReceived(p) => format!(
            "the server sent a TLS alert{}{}",
            p.alert_id.map(|id| format!(" {id}")).unwrap_or_default(),
            p.alert_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        ErrorCode::HttpRequestDenied => "the host refused the request".into(),
        ErrorCode::HttpRequestLengthRequired => "the server requires a Content-Length".into(),
        ErrorCode::HttpRequestBodySize(n) => size("the request body has the wrong size", n),
        ErrorCode::HttpRequestMethodInvalid => "the method is not valid".into(),
        ErrorCode::HttpRequestUriInvalid => "the URL is not valid".into(),
        ErrorCode::HttpRequestUriTooLong => "the URL is too long".into(),
        ErrorCode::HttpRequestHeaderSectionSize(n) => size("the request headers are too large", n),
        ErrorCode::HttpRequestHeaderSize(_) => "a request header is too large".into(),
        ErrorCode::HttpRequestTrailerSectionSize(n) => {
            size("the request trailers are too large", n)
        }
        ErrorCode::HttpRequestTrailerSize(_) => "a request trailer is too large".into(),
        ErrorCode::HttpResponseIncomplete => "the response ended early".into(),
        ErrorCode::HttpResponseHeaderSectionSize(n) => {
            size("the response headers are too large", n)
        }
        ErrorCode::HttpResponseHeaderSize(_) => "a response header is too large".into(),
        ErrorCode::HttpResponseBodySize(n) => size("the response body has the wrong size", n),
        ErrorCode::HttpResponseTrailerSectionSize(n) => {
            size("the response trailers are too large", n)
        }
        ErrorCode::HttpResponseTrailerSize(_) => "a response trailer is too large".into(),
        ErrorCode::HttpResponseTransferCoding(c) => {
            size("the response has an unsupported transfer coding", c)
        }
        ErrorCode::HttpResponseContentCoding(c) => {
            size("the response has an unsupported content coding", c)
        }
        ErrorCode::HttpResponseTimeout => "no response within the first-byte timeout".into(),
        ErrorCode::HttpUpgradeFailed => "the protocol upgrade failed".into(),
        ErrorCode::HttpProtocolError => "the HTTP exchange failed (protocol error)".into(),
        ErrorCode::LoopDetected => "a request loop was detected".into(),
        ErrorCode::ConfigurationError => "the host's HTTP client is misconfigured".into(),
        ErrorCode::InternalError(m) => size("the host's HTTP client failed", m),
    }
}

fn invalid_url(url: &str, reason: impl Into<String>) -> FetchError {
    FetchError::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// Where a URL points, as `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// `host[:port]`, IPv6 hosts in brackets.
    authority: String,
    /// Starts with `/`; unsafe characters percent-encoded; no fragment.
    path_with_query: String,
}

/// Splits an absolute `http://` or `https://` URL. Pure, so it tests on the
/// host. User info (`user:pass@`) is refused (send an `Authorization`
/// header), the fragment dropped, and characters a request target may not
/// hold (spaces, quotes, angle and curly brackets, non-ASCII, …)
/// percent-encoded.
fn parse_url(url: &str) -> Result<Target, FetchError> {
    let bad = |reason: &str| invalid_url(url, reason);
    if url.chars().any(|c| c.is_ascii_control()) {
        return Err(bad("it contains control characters"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad(
            "expected an absolute URL such as https://example.com/path",
        ));
    };
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        "" => return Err(bad("the URL has no scheme; use http:// or https://")),
        other => {
            return Err(bad(&format!(
                "the scheme {other:?} is not supported; only http and https URLs can be fetched"
            )));
        }
    };

    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; send an Authorization header",
        ));
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((ip, after)) = inner.split_once(']') else {
            return Err(bad("the IPv6 address has no closing ']'"));
        };
        if ip.is_empty()
            || !ip
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad(&format!("{ip:?} is not an IPv6 address")));
        }
        match after {
            "" => (&authority[..ip.len() + 2], None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&authority[..ip.len() + 2], Some(port)),
                None => return Err(bad("unexpected characters after the IPv6 address")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(bad(&format!(
            "{host:?} is not a valid host name (write international names in their xn-- form)"
        )));
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(bad(&format!("{port:?} is not a port number (1-65535)")));
    }
    if port.is_some_and(|p| p.parse::<u16>() == Ok(0)) {
        return Err(bad("port 0 cannot be fetched"));
    }

    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let mut path_with_query = String::with_capacity(rest.len() + 1);
    if !rest.starts_with('/') {
        path_with_query.push('/');
    }
    for b in rest.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            path_with_query.push(b as char);
        } else {
            path_with_query.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(Target {
        https,
        authority: authority.to_string(),
        path_with_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(https: bool, authority: &str, path_with_query: &str) -> Target {
        Target {
            https,
            authority: authority.into(),
            path_with_query: path_with_query.into(),
        }
    }

    fn reason(url: &str) -> String {
        match parse_url(url) {
            Err(FetchError::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: expected an invalid URL, got {other:?}"),
        }
    }

    #[test]
    fn urls_split_into_scheme_authority_and_target() {
        assert_eq!(
            parse_url("https://api.example.com/v1/items?q=1&x=y").unwrap(),
            target(true, "api.example.com", "/v1/items?q=1&x=y")
        );
        assert_eq!(
            parse_url("HTTP://127.0.0.1:8080").unwrap(),
            target(false, "127.0.0.1:8080", "/")
        );
        assert_eq!(
            parse_url("http://localhost:3000?a=b").unwrap(),
            target(false, "localhost:3000", "/?a=b")
        );
        assert_eq!(
            parse_url("http://[::1]:9000/x").unwrap(),
            target(false, "[::1]:9000", "/x")
        );
        assert_eq!(
            parse_url("https://[2001:db8::1]/").unwrap(),
            target(true, "[2001:db8::1]", "/")
        );
    }

    #[test]
    fn fragments_are_dropped_and_unsafe_characters_encoded() {
        assert_eq!(
            parse_url("https://example.com/a b/é?q=\"x\"#frag")
                .unwrap()
                .path_with_query,
            "/a%20b/%C3%A9?q=%22x%22"
        );
        assert_eq!(
            parse_url("https://example.com#top")
                .unwrap()
                .path_with_query,
            "/"
        );
        assert_eq!(
            parse_url("https://example.com/%41?a=%2B")
                .unwrap()
                .path_with_query,
            "/%41?a=%2B"
        );
    }

    #[test]
    fn other_schemes_are_refused_clearly() {
        assert!(reason("ftp://example.com/file").contains("\"ftp\" is not supported"));
        assert!(reason("file:///etc/passwd").contains("only http and https"));
        assert!(reason("example.com/path").contains("absolute URL"));
        assert!(reason("://example.com").contains("no scheme"));
    }

    #[test]
    fn bad_authorities_are_refused() {
        assert!(reason("https:///path").contains("no host"));
        assert!(reason("https://user:pw@example.com/").contains("credentials"));
        assert!(reason("https://example.com:http/").contains("port"));
        assert!(reason("https://example.com:70000/").contains("port"));
        assert!(reason("https://example.com:/").contains("port"));
        assert!(reason("https://example.com:0/").contains("port 0"));
        assert!(reason("https://[::1/").contains("closing"));
        assert!(reason("https://[::1]x/").contains("after the IPv6"));
        assert!(reason("https://exa mple.com/").contains("not a valid host"));
        assert!(reason("https://bücher.de/").contains("xn--"));
        assert!(reason("https://example.com/\r\nx").contains("control"));
    }

    #[test]
    fn denied_requests_name_the_host_and_the_setting() {
        let e = from_code("api.example.com:8443", ErrorCode::HttpRequestDenied);
        assert_eq!(
            e.to_string(),
            "the host refused the request: api.example.com:8443 is not in this plugin's [outbound] allowed_hosts"
        );
        let e = Error::from(e);
        assert_eq!(e.code, KilnErrorCode::Forbidden);
        assert!(e.message.contains("allowed_hosts"));
    }

    #[test]
    fn network_failures_are_unavailable_and_say_what_happened() {
        let e = from_code("example.com", ErrorCode::ConnectionRefused);
        assert_eq!(
            e.to_string(),
            "request to example.com failed: the connection was refused"
        );
        assert_eq!(Error::from(e).code, KilnErrorCode::Unavailable);
        let e = from_code("example.com", ErrorCode::HttpResponseTimeout);
        assert!(matches!(e, FetchError::Timeout { .. }));
        assert_eq!(Error::from(e).code, KilnErrorCode::Unavailable);
        let e = parse_url("gopher://x").unwrap_err();
        assert_eq!(Error::from(e).code, KilnErrorCode::Internal);
    }

    #[test]
    fn builders_and_response_helpers() {
        let r = Request::post("http://localhost/x")
            .header("x-a", "1")
            .json(&serde_json::json!({"a": 1}))
            .timeout(Duration::from_secs(2));
        assert_eq!(r.body, br#"{"a":1}"#);
        assert!(r.has_header("Content-Type"));
        assert_eq!(r.timeout, Some(Duration::from_secs(2)));

        let resp = Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"ok":true}"#.to_vec(),
        };
        assert!(resp.is_success());
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert_eq!(resp.text().unwrap(), r#"{"ok":true}"#);
        assert_eq!(resp.json::<serde_json::Value>().unwrap()["ok"], true);
        let bad = Response {
            body: vec![0xff],
            ..resp
        };
        assert!(matches!(bad.text(), Err(FetchError::Decode(_))));
        assert!(matches!(
            bad.json::<serde_json::Value>(),
            Err(FetchError::Decode(_))
        ));
    }
}
