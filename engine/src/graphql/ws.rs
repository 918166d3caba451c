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

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, Executor, Request, Response, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response as HttpResponse;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::{LiveSchema, RequestInfo};
use crate::http::AppState;
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

pub async fn upgrade(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let executor = LimitedOperations {
        schema: LiveSchema(state.registry.clone()),
        running: Arc::new(AtomicUsize::new(0)),
        max: state.graphql.max_operations_per_connection,
    };
    let connection: Arc<str> = format!("ws-{}", uuid::Uuid::new_v4().simple()).into();
    let init_timeout = Duration::from_millis(state.graphql.connection_init_timeout_ms);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // Small buffers: a thousand idle subscribers should not each hold
        // tungstenite's default 128 KiB read buffer. Client messages are
        // GraphQL requests, bounded like an HTTP request body.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(state.max_request_body)
        .max_frame_size(state.max_request_body)
        .on_upgrade(move |socket| async move {
            tracing::debug!(connection = %connection, "GraphQL WebSocket opened");
            let id = connection.clone();
            let initialized = Arc::new(AtomicBool::new(false));
            let flag = initialized.clone();
            let auth_state = state.clone();
            let header_caller = caller.map(|c| c.0).unwrap_or_default();
            let serve = GraphQLWebSocket::new(socket, executor, protocol)
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
                    });
                    Ok(data)
                })
                .serve();
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

/// One connection's executor: at most `max` operations running at once, so
/// a client cannot pile up subscriptions (each holds a parsed document and a
/// place in a topic) on one socket.
#[derive(Clone)]
struct LimitedOperations {
    schema: LiveSchema,
    running: Arc<AtomicUsize>,
    max: usize,
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
        request: Request,
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
        self.schema
            .execute_stream(request, session_data)
            .map(move |r| {
                let _held = &slot;
                r
            })
            .boxed()
    }
}
