//! The endpoint's own answer to the commonest MCP message: a stateless
//! (2026-07-28) `tools/call` with nothing unusual about it.
//!
//! rmcp answers such a call by building a whole service for it (a one-shot
//! transport, a peer, a cancellation token), spawning that service as a
//! task and reading the answer back from a channel: about 60 % of what a
//! tool call cost (docs/performance.md). Here the same call runs inline:
//! the tool is looked up, the caller checked and the plugin called through
//! the same [`KilnMcp::run_tool`] rmcp's handler uses, and the answer is
//! serialised from rmcp's own message types, so it is byte for byte what
//! rmcp would have sent.
//!
//! The rule that keeps this safe: [`Fast::accept`] takes a message only
//! when every check rmcp makes of it is certain to pass — the `Host` guard,
//! `Accept`, `MCP-Protocol-Version`, the SEP-2243 `Mcp-Method` and
//! `Mcp-Name` headers, the per-request `_meta` — and the message has no
//! member rmcp would act on that this path does not (a progress token, a
//! log level, a task, anything unknown). Everything else, including every
//! request that will be refused, goes to rmcp, which answers it as before.
//! A request with an `Origin` header (a browser page) always goes to rmcp.
//!
//! A tool that logs while it runs makes rmcp answer with an event stream
//! (the notifications, then the result) instead of one JSON body; this
//! path does the same.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use rmcp::model::{
    CallToolResponse, ClientCapabilities, Implementation, JsonObject, JsonRpcVersion2_0, RequestId,
    ServerJsonRpcMessage, ServerResult,
};
use tokio::sync::mpsc;

use super::server::{self, KilnMcp, Notify, ToolCaller};
use crate::host::mcp_client::QUEUE;
use crate::registry::Registry;

/// The protocol revision whose requests carry everything they need.
const STATELESS: &str = "2026-07-28";
const TOOLS_CALL: &str = "tools/call";

/// The stateless `tools/call` path: the handler it shares with rmcp and
/// the `Host` allow-list rmcp was given.
#[derive(Clone)]
pub struct Fast {
    server: KilnMcp,
    registry: Arc<Registry>,
    /// `None`: every host (`"*"`, or rmcp's reading of an empty list).
    allowed_hosts: Option<Arc<[Authority]>>,
    keep_alive: Option<Duration>,
}

/// A `Host` as rmcp compares it: the host lowercased without IPv6
/// brackets, and the port if one was given.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    fn parse(text: &str) -> Option<Authority> {
        let authority = axum::http::uri::Authority::try_from(text).ok()?;
        Some(Authority {
            host: normalize_host(authority.host()),
            port: authority.port_u16(),
        })
    }

    /// `allowed` admits `self`: the same host, and the same port when
    /// `allowed` names one.
    fn admitted_by(&self, allowed: &Authority) -> bool {
        allowed.host == self.host && allowed.port.is_none_or(|p| self.port == Some(p))
    }
}

/// A host as rmcp normalises it: without IPv6 brackets, lowercased.
fn normalize_host(host: &str) -> String {
    host.trim_matches('[')
        .trim_matches(']')
        .to_ascii_lowercase()
}

/// An entry of `[mcp] allowed_hosts` as rmcp reads it: an authority, or
/// failing that a bare host; a blank entry admits nothing.
fn allowed_host(entry: &str) -> Option<Authority> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    Some(Authority::parse(entry).unwrap_or_else(|| Authority {
        host: normalize_host(entry),
        port: None,
    }))
}

/// The `Host` allow-list as rmcp applies it: `None` (an empty list)
/// admits every host; otherwise the entries that parse.
fn allow_list(entries: &[String]) -> Option<Arc<[Authority]>> {
    (!entries.is_empty()).then(|| entries.iter().filter_map(|e| allowed_host(e)).collect())
}

/// The message, as the fast path reads it. Any member not named here sends
/// the message to rmcp (`deny_unknown_fields`), as does a member given
/// twice or of the wrong type.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[allow(dead_code)]
    jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    method: String,
    params: Params,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
    #[serde(rename = "_meta")]
    meta: Meta,
}

/// The per-request metadata 2026-07-28 requires, decoded as rmcp decodes
/// it. No progress token and no log level: those change what the answer
/// is, and rmcp handles them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: String,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    #[allow(dead_code)]
    capabilities: ClientCapabilities,
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    #[allow(dead_code)]
    info: Option<Implementation>,
}

/// A call the fast path took.
pub struct Accepted {
    id: RequestId,
    name: String,
    arguments: JsonObject,
}

impl Fast {
    /// `allowed_hosts`: `None` admits every host (`"*"` in the config);
    /// otherwise the list given to rmcp, read as rmcp reads it.
    pub fn new(
        server: KilnMcp,
        registry: Arc<Registry>,
        allowed_hosts: Option<&[String]>,
        keep_alive: Option<Duration>,
    ) -> Fast {
        Fast {
            server,
            registry,
            allowed_hosts: allowed_hosts.and_then(allow_list),
            keep_alive,
        }
    }

    /// The call in `body`, when this path may answer it; `None` hands the
    /// request to rmcp.
    pub fn accept(&self, headers: &HeaderMap, body: &[u8]) -> Option<Accepted> {
        accept(self.allowed_hosts.as_deref(), headers, body)
    }

    /// Answers `call` for the request `parts` describe, or gives it back
    /// (unknown tool, a caller the tool refuses: rmcp says why).
    pub async fn answer(&self, parts: &Parts, call: Accepted) -> Result<Response, Accepted> {
        let snapshot = self.registry.snapshot();
        let caller = server::caller_of(parts);
        let allowed = snapshot
            .mcp
            .tool(&call.name)
            .is_some_and(|(plugin, tool)| self.server.may_call(plugin, tool, &caller));
        if !allowed {
            return Err(call);
        }
        tracing::debug!(tool = %call.name, "tools/call answered by the endpoint's stateless path");
        let Accepted {
            id,
            name,
            arguments,
        } = call;
        let from = ToolCaller {
            caller,
            request_id: server::request_id_of(parts),
            idempotency_key: server::idempotency_key_of(parts).map(str::to_owned),
            progress: None,
        };
        let (notes, mut heard) = mpsc::channel(QUEUE);
        let server = self.server.clone();
        // Spawned, as rmcp runs its handler: a call runs to its end (and
        // its charge is posted) even when the client leaves or the request
        // times out. Boxed first, so the task holds a pointer, not the
        // whole state of the call.
        let mut running = tokio::spawn(Box::pin(async move {
            let Some((plugin, tool)) = snapshot.mcp.tool(&name) else {
                unreachable!("the tool was found in this snapshot above")
            };
            server
                .run_tool(plugin, tool, arguments, from, Notify::Queue(notes))
                .await
        }));
        let first = tokio::select! {
            biased;
            response = &mut running => Ok(response),
            note = heard.recv() => Err(note),
        };
        match first {
            Ok(response) => {
                let mut early = Vec::new();
                while let Ok(note) = heard.try_recv() {
                    early.push(note);
                }
                if early.is_empty() {
                    Ok(json(&result(response, id)))
                } else {
                    early.push(result(response, id));
                    Ok(event_stream(Stream::Ending(early.into()), self.keep_alive))
                }
            }
            // The queue closes only when the call is over.
            Err(None) => Ok(json(&result(running.await, id))),
            Err(Some(note)) => Ok(event_stream(
                Stream::Running {
                    first: Some(Box::new(note)),
                    running,
                    heard,
                    id,
                },
                self.keep_alive,
            )),
        }
    }
}

/// The call in `body` when every check rmcp would make of it passes for
/// certain. The headers are looked at first: most requests that are not
/// stateless tool calls never have their body parsed here.
fn accept(
    allowed_hosts: Option<&[Authority]>,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Accepted> {
    if !headers_pass(allowed_hosts, headers) {
        return None;
    }
    let message: Message = serde_json::from_slice(body).ok()?;
    let name = message.params.name;
    let passes = message.method == TOOLS_CALL
        && message.params.meta.protocol_version == STATELESS
        // Base64-encoded names (`=?base64?…?=`) are rmcp's to decode.
        && single(headers, "mcp-name").is_some_and(|n| n == name && !n.starts_with("=?"));
    passes.then(|| Accepted {
        id: message.id,
        name,
        arguments: message.params.arguments.unwrap_or_default(),
    })
}

/// Every header check rmcp makes of a stateless `tools/call`, passed for
/// certain.
fn headers_pass(allowed_hosts: Option<&[Authority]>, headers: &HeaderMap) -> bool {
    // A browser page (rmcp checks its origin), a session, a resumed
    // stream: not this path's.
    if headers.contains_key(header::ORIGIN)
        || headers.contains_key("mcp-session-id")
        || headers.contains_key("last-event-id")
    {
        return false;
    }
    let host_passes = single(headers, header::HOST.as_str())
        .and_then(Authority::parse)
        .is_some_and(|host| {
            allowed_hosts.is_none_or(|list| list.iter().any(|a| host.admitted_by(a)))
        });
    host_passes
        && accepts_json_and_event_streams(headers)
        && single(headers, "mcp-protocol-version") == Some(STATELESS)
        && single(headers, "mcp-method") == Some(TOOLS_CALL)
}

/// The one value of `name`, as text; `None` when it is absent, given more
/// than once or not text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// `Accept` names both `application/json` and `text/event-stream`, each
/// without parameters (a quality of 0 would take a media type back out:
/// those, and quoted values, are left to rmcp).
fn accepts_json_and_event_streams(headers: &HeaderMap) -> bool {
    let Some(accept) = single(headers, header::ACCEPT.as_str()) else {
        return false;
    };
    if accept.contains('"') {
        return false;
    }
    let plain = || {
        accept
            .split(',')
            .map(str::trim)
            .filter(|m| !m.contains(';'))
    };
    plain().any(|m| m.eq_ignore_ascii_case("application/json"))
        && plain().any(|m| m.eq_ignore_ascii_case("text/event-stream"))
}

/// A finished call's answer (the task ends without one only if the
/// handler panicked).
type Finished = Result<CallToolResponse, tokio::task::JoinError>;

fn result(finished: Finished, id: RequestId) -> ServerJsonRpcMessage {
    match finished {
        Ok(response) => ServerJsonRpcMessage::response(ServerResult::from(response), id),
        Err(e) => {
            tracing::error!(error = %e, "an MCP tool call ended without an answer");
            ServerJsonRpcMessage::error(
                rmcp::ErrorData::internal_error("the tool call ended without an answer", None),
                Some(id),
            )
        }
    }
}

fn to_json(message: &ServerJsonRpcMessage) -> Vec<u8> {
    // rmcp's own message types serialise infallibly (no non-string keys).
    serde_json::to_vec(message).unwrap_or_else(|e| {
        tracing::error!(error = %e, "an MCP answer could not be serialised");
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#
            .to_vec()
    })
}

/// The whole answer as one JSON body, as rmcp sends it.
fn json(message: &ServerJsonRpcMessage) -> Response {
    let mut response = Response::new(Body::from(to_json(message)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What is left of an event-stream answer.
enum Stream {
    /// The call is still running; its notifications come through `heard`.
    Running {
        /// Heard and not sent yet.
        first: Option<Box<ServerJsonRpcMessage>>,
        running: tokio::task::JoinHandle<CallToolResponse>,
        heard: mpsc::Receiver<ServerJsonRpcMessage>,
        id: RequestId,
    },
    /// The call is over: these messages, the result last.
    Ending(std::collections::VecDeque<ServerJsonRpcMessage>),
}

/// The answer as an event stream: each message an event, the result the
/// last; comments keep a quiet stream open. A client that leaves drops
/// the stream, not the call.
fn event_stream(stream: Stream, keep_alive: Option<Duration>) -> Response {
    let frames = futures_util::stream::unfold(stream, move |state| async move {
        let event = |m: &ServerJsonRpcMessage| {
            let mut frame = b"data: ".to_vec();
            frame.extend(to_json(m));
            frame.extend(b"\n\n");
            Bytes::from(frame)
        };
        match state {
            Stream::Ending(mut left) => {
                let message = left.pop_front()?;
                Some((Ok::<_, Infallible>(event(&message)), Stream::Ending(left)))
            }
            Stream::Running {
                first: Some(note),
                running,
                heard,
                id,
            } => Some((
                Ok(event(&note)),
                Stream::Running {
                    first: None,
                    running,
                    heard,
                    id,
                },
            )),
            Stream::Running {
                first: None,
                mut running,
                mut heard,
                id,
            } => {
                let ping = async {
                    match keep_alive {
                        Some(every) => tokio::time::sleep(every).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    note = heard.recv() => match note {
                        Some(note) => Some((Ok(event(&note)), Stream::Running { first: None, running, heard, id })),
                        // Every notification is out: the result is next.
                        None => {
                            let response = (&mut running).await;
                            Some((Ok(event(&result(response, id))), Stream::Ending(Default::default())))
                        }
                    },
                    // The call ends after its last notification is queued.
                    response = &mut running => {
                        let mut left = std::collections::VecDeque::new();
                        while let Ok(note) = heard.try_recv() {
                            left.push_back(note);
                        }
                        left.push_back(result(response, id));
                        let first = left.pop_front()?;
                        Some((Ok(event(&first)), Stream::Ending(left)))
                    }
                    () = ping => Some((Ok(Bytes::from_static(b":\n\n")), Stream::Running { first: None, running, heard, id })),
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    *response.status_mut() = StatusCode::OK;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("host", "127.0.0.1:8080"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];

    fn with(change: (&'static str, Option<&'static str>)) -> HeaderMap {
        let mut h = headers(GOOD);
        match change {
            (name, Some(value)) => {
                h.insert(name, HeaderValue::from_static(value));
            }
            (name, None) => {
                h.remove(name);
            }
        }
        h
    }

    fn body(params: serde_json::Value) -> Vec<u8> {
        serde_json::json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params })
            .to_string()
            .into_bytes()
    }

    fn meta() -> serde_json::Value {
        serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" }
        })
    }

    /// What `Fast::accept` decides, without a registry: the header and
    /// body rules only.
    fn takes(allowed: &[&str], h: &HeaderMap, b: &[u8]) -> bool {
        let entries: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        accept(allow_list(&entries).as_deref(), h, b).is_some()
    }

    #[test]
    fn a_plain_stateless_call_is_taken() {
        let b = body(
            serde_json::json!({ "name": "echo", "arguments": { "text": "x" }, "_meta": meta() }),
        );
        assert!(takes(&["localhost", "127.0.0.1"], &headers(GOOD), &b));
        assert!(takes(&[], &headers(GOOD), &b));
        assert!(takes(&["127.0.0.1:8080"], &headers(GOOD), &b));
        let no_arguments = body(serde_json::json!({ "name": "echo", "_meta": meta() }));
        assert!(takes(&["127.0.0.1"], &headers(GOOD), &no_arguments));
    }

    #[test]
    fn anything_rmcp_might_refuse_or_treat_differently_goes_to_rmcp() {
        let b = body(serde_json::json!({ "name": "echo", "arguments": {}, "_meta": meta() }));
        let allowed = ["localhost", "127.0.0.1"];
        for h in [
            with(("host", Some("evil.example.com"))),
            with(("host", None)),
            with(("origin", Some("http://localhost"))),
            with(("mcp-session-id", Some("abc"))),
            with(("last-event-id", Some("1"))),
            with(("accept", Some("application/json"))),
            with(("accept", Some("application/json, text/event-stream;q=0"))),
            with(("accept", Some("*/*"))),
            with(("mcp-protocol-version", Some("2025-11-25"))),
            with(("mcp-protocol-version", None)),
            with(("mcp-method", Some("tools/list"))),
            with(("mcp-method", None)),
            with(("mcp-name", Some("other"))),
            with(("mcp-name", Some("=?base64?ZWNobw==?="))),
            with(("mcp-name", None)),
        ] {
            assert!(!takes(&allowed, &h, &b), "{h:?}");
        }
        assert!(!takes(&["127.0.0.1:9999"], &headers(GOOD), &b));
        // A list of blank entries admits no host (an empty list admits all).
        assert!(!takes(&[""], &headers(GOOD), &b));
        assert!(!takes(&["  "], &headers(GOOD), &b));
        let mut twice = headers(GOOD);
        twice.append("mcp-method", HeaderValue::from_static("tools/call"));
        assert!(!takes(&allowed, &twice, &b));

        let mut progress = meta();
        progress["progressToken"] = serde_json::json!(1);
        let mut level = meta();
        level["io.modelcontextprotocol/logLevel"] = serde_json::json!("debug");
        let mut old = meta();
        old["io.modelcontextprotocol/protocolVersion"] = serde_json::json!("2025-11-25");
        let mut no_capabilities = meta();
        no_capabilities
            .as_object_mut()
            .unwrap()
            .remove("io.modelcontextprotocol/clientCapabilities");
        for params in [
            serde_json::json!({ "name": "echo", "_meta": progress }),
            serde_json::json!({ "name": "echo", "_meta": level }),
            serde_json::json!({ "name": "echo", "_meta": old }),
            serde_json::json!({ "name": "echo", "_meta": no_capabilities }),
            serde_json::json!({ "name": "echo" }),
            serde_json::json!({ "name": "echo", "arguments": [1], "_meta": meta() }),
            serde_json::json!({ "name": "echo", "task": {}, "_meta": meta() }),
            serde_json::json!({ "name": "other", "_meta": meta() }),
        ] {
            assert!(
                !takes(&allowed, &headers(GOOD), &body(params.clone())),
                "{params}"
            );
        }
        let duplicate = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        assert!(!takes(&allowed, &headers(GOOD), duplicate));
        let not_2 = br#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        assert!(!takes(&allowed, &headers(GOOD), not_2));
        let notification = br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        assert!(!takes(&allowed, &headers(GOOD), notification));
    }

    #[test]
    fn hosts_compare_as_rmcp_compares_them() {
        let host = Authority::parse("LocalHost:3000").unwrap();
        assert!(host.admitted_by(&Authority::parse("localhost").unwrap()));
        assert!(host.admitted_by(&Authority::parse("localhost:3000").unwrap()));
        assert!(!host.admitted_by(&Authority::parse("localhost:3001").unwrap()));
        let v6 = Authority::parse("[::1]:80").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(allowed_host("][x").unwrap().host, "[x");
        assert!(allowed_host(" ").is_none());
    }
}
