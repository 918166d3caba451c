//! GraphQL over WebSocket at `/graphql/ws`: the `graphql-transport-ws`
//! protocol (the `graphql-ws` npm client) and the legacy `graphql-ws`
//! protocol (subscriptions-transport-ws), chosen by `Sec-WebSocket-Protocol`.
//!
//! Each operation runs on the schema current when it starts (see
//! [`LiveSchema`]); a subscription keeps running across a plugin swap, fed by
//! its topic, until the client stops it or falls too far behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;

use super::{LiveSchema, RequestInfo};
use crate::http::AppState;

pub async fn upgrade(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let executor = LiveSchema(state.registry.clone());
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
            let serve = GraphQLWebSocket::new(socket, executor, protocol)
                .on_connection_init(move |_payload| async move {
                    flag.store(true, Ordering::Relaxed);
                    let mut data = Data::default();
                    data.insert(RequestInfo {
                        request_id: id,
                        principal: None,
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
