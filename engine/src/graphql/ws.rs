//! GraphQL over WebSocket at `/graphql/ws`: the `graphql-transport-ws`
//! protocol (the `graphql-ws` npm client) and the legacy `graphql-ws`
//! protocol (subscriptions-transport-ws), chosen by `Sec-WebSocket-Protocol`.
//!
//! Each operation runs on the schema current when it starts (see
//! [`LiveSchema`]); a subscription keeps running across a plugin swap, fed by
//! its topic, until the client stops it or falls too far behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use std::str::FromStr;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, Request, Response, ServerError};
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use futures_util::{Sink, SinkExt, future};
use tokio_util::sync::CancellationToken;

use super::state::GraphqlState;
use super::{LiveSchema, RequestInfo};
use crate::identity::Caller;

/// The bearer token in a `connection_init` payload: `{"authorization":
/// "Bearer <token>"}` (any letter case of the key). A value that is there
/// but is not a bearer token is an error, not an anonymous caller.
fn credential_in(payload: &serde_json::Value) -> Result<Option<&str>, &'static str> {
    let Some((_, value)) = payload.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    }) else {
        return Ok(None);
    };
    let bearer = value.as_str().and_then(|v| v.trim().split_once(' '));
    match bearer {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err("authorization must be \"Bearer <token>\""),
    }
}

/// The protocol the client asked for in `Sec-WebSocket-Protocol`; 400
/// without one we speak.
fn protocol_of(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
}

/// The close frame sent at shutdown, after a `complete` for every running
/// operation: 1001 is "going away", which clients read as "reconnect".
const GOING_AWAY: u16 = 1001;

pub async fn upgrade(
    State(state): State<GraphqlState>,
    request: axum::extract::Request,
) -> HttpResponse {
    let Some(protocol) = protocol_of(request.headers()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let client: Arc<str> = state.transport.client_key(&request).into();
    let held = match state
        .transport
        .take(&client, crate::streams::limits::Kind::Stream)
    {
        Ok(held) => held,
        Err(refused) => return refused.into_response(),
    };
    let caller = request.extensions().get::<Caller>().cloned();
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let running = Arc::new(AtomicUsize::new(0));
    let executor = LimitedOperations {
        schema: LiveSchema(state.registry.clone()),
        running: running.clone(),
        max: state.config.max_operations_per_connection,
        shutdown: state.transport.shutdown.clone(),
        streams: state.transport.streams.clone(),
        client,
    };
    let connection: Arc<str> = format!("ws-{}", uuid::Uuid::new_v4().simple()).into();
    let init_timeout = Duration::from_millis(state.config.connection_init_timeout_ms);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // Small buffers: a thousand idle subscribers should not each hold
        // tungstenite's default 128 KiB read buffer. Client messages are
        // GraphQL requests, bounded like an HTTP request body.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(state.transport.max_request_body)
        .max_frame_size(state.transport.max_request_body)
        .on_upgrade(move |socket| async move {
            // The socket's place, given back when this task ends.
            let _held = held;
            tracing::debug!(connection = %connection, "GraphQL WebSocket opened");
            let id = connection.clone();
            let initialized = Arc::new(AtomicBool::new(false));
            let flag = initialized.clone();
            let auth_state = state.clone();
            let header_caller = caller.unwrap_or_default();
            let (sink, input) = socket.split();
            // What async-graphql-axum's `GraphQLWebSocket::serve` feeds the
            // protocol; the loop is ours so that shutdown can close the socket.
            let input = input
                .take_while(|m| future::ready(m.is_ok()))
                .filter_map(|m| {
                    future::ready(match m {
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                        _ => None,
                    })
                });
            let messages = async_graphql::http::WebSocket::new(executor, input, protocol)
                .on_connection_init(move |payload| async move {
                    // Browsers cannot set headers on a WebSocket: clients
                    // may send the credential in `connectionParams` instead.
                    let credential = credential_in(&payload).map_err(|e| {
                        async_graphql::Error::new(format!("connection_init: {e}"))
                    })?;
                    let caller = match credential {
                        Some(token) => match auth_state.auth.authenticate_token(token).await {
                            Ok(p) => Caller(Some(Arc::new(p))),
                            Err(e) => {
                                return Err(async_graphql::Error::new(format!(
                                    "connection_init credential refused: {e}"
                                )));
                            }
                        },
                        None => header_caller,
                    };
                    flag.store(true, Ordering::Relaxed);
                    let mut data = Data::default();
                    data.insert(RequestInfo {
                        request_id: id,
                        caller,
                        access: auth_state.access.clone(),
                        billing: Some(auth_state.billing.clone()),
                        idempotency_key: None,
                    });
                    Ok(data)
                });
            let serve = serve(
                messages,
                sink,
                running,
                state.transport.shutdown.clone(),
                &connection,
            );
            // A client that never sends `connection_init` does not get to
            // hold a socket: drop it when the time is up.
            let init_deadline = async {
                tokio::time::sleep(init_timeout).await;
                if initialized.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = init_deadline => {
                    tracing::debug!(connection = %connection, "GraphQL WebSocket dropped: no connection_init in time");
                }
            }
            tracing::debug!(connection = %connection, "GraphQL WebSocket closed");
        })
}

/// Sends what the protocol says until either side closes. At shutdown the
/// executor ends every subscription, the protocol sends `complete` for
/// each; once no operation runs, a 1001 close frame ends the connection.
async fn serve(
    messages: impl Stream<Item = WsMessage>,
    mut sink: impl Sink<Message> + Unpin,
    running: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    connection: &str,
) {
    let mut messages = std::pin::pin!(messages);
    let mut draining = false;
    loop {
        if draining && running.load(Ordering::Relaxed) == 0 {
            let close = Message::Close(Some(CloseFrame {
                code: GOING_AWAY,
                reason: "the server is shutting down".into(),
            }));
            if sink.send(close).await.is_err() {
                tracing::debug!(
                    connection,
                    "cannot send the close frame: the client is gone"
                );
            }
            return;
        }
        let message = tokio::select! {
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                continue;
            }
            m = messages.next() => m,
        };
        let Some(message) = message else { return };
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
}

/// One connection's executor: at most `max` operations running at once, so
/// a client cannot pile up subscriptions (each holds a parsed document and a
/// place in a topic) on one socket.
#[derive(Clone)]
struct LimitedOperations {
    schema: LiveSchema,
    running: Arc<AtomicUsize>,
    max: usize,
    /// Ends this connection's subscriptions when the engine shuts down.
    shutdown: CancellationToken,
    /// Subscriptions of one client, over all its sockets, are bounded too.
    streams: crate::streams::limits::StreamSlots,
    client: Arc<str>,
}

/// Gives an operation's place back when its stream ends or is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Executor for LimitedOperations {
    async fn execute(&self, request: Request) -> Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if self.running.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.running.fetch_sub(1, Ordering::Relaxed);
            let message = format!(
                "this connection already runs {} operations (graphql.max_operations_per_connection); \
                 complete one first",
                self.max
            );
            return stream::once(async move {
                Response::from_errors(vec![ServerError::new(message, None)])
            })
            .boxed();
        }
        let slot = Slot(self.running.clone());
        // Parsed once: the executor below reads the same cached document.
        let name = request.operation_name.clone();
        let operation = request
            .parsed_query()
            .ok()
            .and_then(|doc| super::http::operation_in(doc, name.as_deref()));
        let subscription = match operation {
            Some(async_graphql::parser::types::OperationType::Subscription) => match self
                .streams
                .take(&self.client, crate::streams::limits::Kind::Subscription)
            {
                Ok(held) => Some(held),
                Err(refused) => {
                    let message = refused.to_string();
                    return stream::once(async move {
                        Response::from_errors(vec![ServerError::new(message, None)])
                    })
                    .boxed();
                }
            },
            _ => None,
        };
        let results = self.schema.execute_stream(request, session_data);
        super::ends_at_shutdown(operation, results, &self.shutdown)
            .map(move |r| {
                let _held = (&slot, &subscription);
                r
            })
            .boxed()
    }
}
