//! Model Context Protocol: plugins declare tools and prompts; the host
//! serves them to AI clients at `/mcp` over Streamable HTTP, on the
//! official Rust SDK (`rmcp`).
//!
//! - [`decl`]: one plugin's declarations, checked, schemas compiled (pure).
//! - [`catalog`]: every plugin's tools and prompts as one catalog, per snapshot.
//! - [`server`]: the `rmcp` handler: lists, argument checks, calls, progress,
//!   logging and list-change notifications.
//! - [`fast`]: a plain stateless `tools/call` answered by the endpoint
//!   itself, through the same handler, without rmcp's per-request service.
//!
//! Protocol versions 2025-06-18 and 2025-11-25 run in sessions
//! (`Mcp-Session-Id`, a standing event stream for notifications); the
//! 2026-07-28 revision is stateless. `rmcp` negotiates the version and
//! checks `MCP-Protocol-Version`; the `Host` and `Origin` guards come from
//! `[mcp]` in the config.

pub mod catalog;
pub mod config;
pub mod decl;
pub mod door;
pub mod fast;
pub mod server;
pub mod sessions;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use catalog::Catalog;
pub use sessions::{Refused, SessionLimits, Sessions};

use crate::registry::Registry;
pub use config::McpConfig;

/// The tower service mounted at `/mcp`.
pub type McpService = StreamableHttpService<server::KilnMcp, Sessions>;

/// The MCP endpoint: `rmcp`'s service and the session bounds around it.
#[derive(Clone)]
pub struct Mcp {
    pub service: McpService,
    pub sessions: Sessions,
    pub fast: fast::Fast,
}

pub fn service(
    registry: Arc<Registry>,
    access: Arc<crate::identity::access::AccessConfig>,
    billing: Arc<crate::billing::Billing>,
    config: &McpConfig,
    max_body: usize,
) -> Mcp {
    let keep_alive =
        (config.sse_keep_alive_ms > 0).then(|| Duration::from_millis(config.sse_keep_alive_ms));
    let every_host = config.allowed_hosts.iter().any(|h| h == "*");
    // Its own handler: a session's handler remembers that session's log
    // level, and stateless calls start from the default.
    let fast = fast::Fast::new(
        server::KilnMcp::new(registry.clone(), access.clone(), billing.clone()),
        registry.clone(),
        (!every_host).then_some(config.allowed_hosts.as_slice()),
        keep_alive,
    );
    let mut http = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(keep_alive)
        .with_max_request_body_bytes(max_body)
        // A stateless call whose handler sends nothing before its result is
        // answered as one JSON body; progress or log messages before it turn
        // the answer into an event stream, as the protocol allows.
        .with_json_response(true);
    http = if every_host {
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
    let mut local = LocalSessionManager::default();
    local.session_config.keep_alive = Some(Duration::from_millis(config.session_idle_timeout_ms));
    let sessions = Sessions::new(
        local,
        SessionLimits {
            max_sessions: config.max_sessions,
            max_per_client: config.max_sessions_per_client,
            per_minute: config.sessions_per_minute,
        },
    );
    let service = StreamableHttpService::new(
        move || {
            Ok(server::KilnMcp::new(
                registry.clone(),
                access.clone(),
                billing.clone(),
            ))
        },
        Arc::new(sessions.clone()),
        http,
    );
    Mcp {
        service,
        sessions,
        fast,
    }
}

/// A JSON-RPC error answered over HTTP, `id` null when the request had none
/// that could be read (JSON-RPC 2.0, section 5).
fn rpc_error(
    status: StatusCode,
    code: i64,
    message: &str,
    id: Option<serde_json::Value>,
) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(serde_json::Value::Null),
        "error": { "code": code, "message": message },
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// JSON-RPC's codes for a message that is not JSON (-32700) or not a
/// JSON-RPC 2.0 request object (-32600).
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
/// Implementation-defined server errors: refused by a session bound.
const SESSION_REFUSED: i64 = -32000;

/// What a POST body says about itself, read before `rmcp` sees it.
enum Message {
    /// Not a JSON-RPC 2.0 message: the answer to send instead.
    Invalid(Box<Response>),
    /// An `initialize` request, which opens a session.
    Initialize(serde_json::Value),
    Other,
}

/// The three members the endpoint looks at; the rest of the message is
/// skipped without being built (rmcp parses it in full next).
#[derive(serde::Deserialize)]
struct Envelope {
    jsonrpc: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
    method: Option<serde_json::Value>,
}

fn read_message(body: &[u8]) -> Message {
    let not_json = |e: serde_json::Error| {
        let message = format!("the body is not JSON: {e}");
        Message::Invalid(Box::new(rpc_error(
            StatusCode::BAD_REQUEST,
            PARSE_ERROR,
            &message,
            None,
        )))
    };
    let invalid = |message: &str, id: Option<serde_json::Value>| {
        Message::Invalid(Box::new(rpc_error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            message,
            id,
        )))
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return not_json(e);
        }
        return if first == Some(&b'[') {
            invalid(
                "JSON-RPC batches are not supported by MCP since 2025-06-18; send one message",
                None,
            )
        } else {
            invalid("a JSON-RPC message is a JSON object", None)
        };
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        // Well-formed JSON that is not one message: a member given twice,
        // which readers would take differently.
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return invalid(&format!("not a JSON-RPC message: {e}"), None);
        }
        Err(e) => return not_json(e),
    };
    let id = envelope.id;
    if envelope.jsonrpc.as_ref().and_then(|v| v.as_str()) != Some("2.0") {
        return invalid("\"jsonrpc\" must be \"2.0\"", id);
    }
    match envelope.method {
        Some(serde_json::Value::String(m)) if m == "initialize" => {
            Message::Initialize(id.unwrap_or(serde_json::Value::Null))
        }
        Some(serde_json::Value::String(_)) | None => Message::Other,
        Some(_) => invalid("\"method\" must be a string", id),
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `/mcp`: the `rmcp` service, behind the checks `rmcp` does not make.
///
/// A POST's body is read first: one that is not a JSON-RPC 2.0 message gets
/// 400 with JSON-RPC's error code (rmcp would say 415), and an `initialize`
/// must find a session slot ([`Sessions::reserve`]) and, on an engine whose
/// access rules give anonymous callers no tool or prompt, a credential.
///
/// A GET opens a session's standing event stream, which never ends by
/// itself: at shutdown its body ends between two events, so the client
/// sees the stream finish and the server's wait for open connections is
/// short. POSTs are calls in flight and run to their answer (bounded by the
/// shutdown grace period). Not cancelling rmcp's own token is deliberate:
/// that would cancel the calls too.
pub async fn endpoint(
    axum::extract::State(state): axum::extract::State<state::McpState>,
    request: axum::extract::Request,
) -> Response {
    use futures_util::StreamExt;
    use tower::ServiceExt;

    let mcp = &state.mcp;
    let mut slot = None;
    let request = if request.method() == Method::POST && is_json(request.headers()) {
        let client = state.transport.client_key(&request);
        let anonymous = request
            .extensions()
            .get::<crate::identity::Caller>()
            .is_none_or(|c| c.principal().is_none());
        let opens_session = !request.headers().contains_key("mcp-session-id");
        let (parts, body) = request.into_parts();
        let Ok(bytes) =
            crate::request::body::read(&parts, body, state.transport.max_request_body).await
        else {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                &format!(
                    "the request body exceeds {} bytes",
                    state.transport.max_request_body
                ),
                None,
            );
        };
        if let Some(call) = mcp.fast.accept(&parts.headers, &bytes) {
            // Given back when the tool is unknown or refuses the caller:
            // rmcp answers those.
            if let Ok(response) = mcp.fast.answer(&parts, call).await {
                return response;
            }
        }
        match read_message(&bytes) {
            Message::Invalid(response) => return *response,
            Message::Initialize(id) if opens_session => {
                if anonymous && !state.access.admits_anonymous_mcp() {
                    let mut r = rpc_error(
                        StatusCode::UNAUTHORIZED,
                        SESSION_REFUSED,
                        "this engine serves MCP to authenticated callers only \
                         ([access] default is not public): send a credential \
                         (Authorization: Bearer <API key or JWT>)",
                        Some(id),
                    );
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return r;
                }
                match mcp.sessions.reserve(&client).await {
                    Ok(s) => slot = Some(s),
                    Err(refused) => return refused_session(&refused, id),
                }
            }
            _ => {}
        }
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        request
    };
    let standing = request.method() == Method::GET;
    let held = if standing {
        match state.transport.take_stream(&request) {
            Ok(held) => Some(held),
            Err(refused) => return refused.into_response(),
        }
    } else {
        None
    };
    let call = mcp.service.clone().oneshot(request);
    let response = match slot {
        Some(slot) => Sessions::with_slot(slot, call).await,
        None => call.await,
    };
    let response = match response {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if !standing {
        return response.map(axum::body::Body::new);
    }
    let (parts, body) = response.into_parts();
    // The stream's place is given back when its body ends or is dropped.
    let frames = http_body_util::BodyStream::new(body)
        .take_until(state.transport.shutdown.clone().cancelled_owned())
        .map(move |frame| {
            let _held = &held;
            frame
        });
    Response::from_parts(
        parts,
        axum::body::Body::new(http_body_util::StreamBody::new(frames)),
    )
}

fn refused_session(refused: &Refused, id: serde_json::Value) -> Response {
    let status = match refused {
        Refused::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
        Refused::ClientFull(_) | Refused::TooFast { .. } => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut r = rpc_error(status, SESSION_REFUSED, &refused.to_string(), Some(id));
    let wait = match refused {
        Refused::TooFast { wait, .. } => *wait,
        _ => Duration::from_secs(1),
    };
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::request::buckets::seconds(wait)),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refusal(body: &str) -> Option<(StatusCode, i64)> {
        let Message::Invalid(response) = read_message(body.as_bytes()) else {
            return None;
        };
        let status = response.status();
        let body = axum::body::to_bytes((*response).into_body(), usize::MAX)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        Some((status, v["error"]["code"].as_i64().unwrap()))
    }

    #[tokio::test]
    async fn what_is_not_one_json_rpc_message_is_refused_with_its_code() {
        let bad = Some((StatusCode::BAD_REQUEST, INVALID_REQUEST));
        assert_eq!(
            refusal("{\"jsonrpc\":").await,
            Some((StatusCode::BAD_REQUEST, PARSE_ERROR))
        );
        assert_eq!(
            refusal("[1,").await,
            Some((StatusCode::BAD_REQUEST, PARSE_ERROR))
        );
        assert_eq!(refusal(" [{\"jsonrpc\":\"2.0\"}]").await, bad);
        assert_eq!(refusal("\"hello\"").await, bad);
        assert_eq!(refusal("{\"jsonrpc\":2,\"method\":\"x\"}").await, bad);
        assert_eq!(refusal("{\"jsonrpc\":\"2.0\",\"method\":7}").await, bad);
        // Two readers of a member given twice may disagree: refused.
        assert_eq!(
            refusal("{\"jsonrpc\":\"2.0\",\"method\":\"initialize\",\"method\":\"tools/call\"}")
                .await,
            bad
        );
    }

    #[test]
    fn initialize_is_told_apart_from_other_messages() {
        let init =
            r#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"a":[1,{"b":null}]}}"#;
        assert!(matches!(read_message(init.as_bytes()), Message::Initialize(id) if id == 3));
        let call = r#" {"params":{"name":"echo"},"jsonrpc":"2.0","id":"x","method":"tools/call"}"#;
        assert!(matches!(read_message(call.as_bytes()), Message::Other));
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(matches!(read_message(note.as_bytes()), Message::Other));
    }
}
