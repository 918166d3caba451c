//! GraphQL over WebSocket at `/graphql/ws`: the `graphql-transport-ws`
//! protocol (the `graphql-ws` npm client) and the legacy `graphql-ws`
//! protocol (subscriptions-transport-ws), chosen by `Sec-WebSocket-Protocol`.
//!
//! Each operation runs on the schema current when it starts (see
//! [`LiveSchema`]); a subscription keeps running across a plugin swap, fed by
//! its topic, until the client stops it or falls too far behind.

use std::sync::Arc;

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
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            tracing::debug!(connection = %connection, "GraphQL WebSocket opened");
            let id = connection.clone();
            GraphQLWebSocket::new(socket, executor, protocol)
                .on_connection_init(move |_payload| async move {
                    let mut data = Data::default();
                    data.insert(RequestInfo {
                        request_id: id,
                        principal: None,
                    });
                    Ok(data)
                })
                .serve()
                .await;
            tracing::debug!(connection = %connection, "GraphQL WebSocket closed");
        })
}
