//! What GraphQL's transports (`http.rs`, `ws.rs`, `sse.rs`) need of the
//! engine, and nothing more: built once by `http` and handed to the routes
//! [`router`] mounts.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::GraphqlConfig;
use crate::identity::access::AccessConfig;
use crate::identity::authenticator::Authenticator;
use crate::registry::Registry;
use crate::request::transport::Transport;

/// Shared by the door's routes (axum's `State`).
pub type GraphqlState = Arc<Shared>;

pub struct Shared {
    /// The live snapshot, whose schema answers.
    pub registry: Arc<Registry>,
    pub config: GraphqlConfig,
    /// Who may read which field.
    pub access: Arc<AccessConfig>,
    /// Reads a WebSocket's `connection_init` credential.
    pub auth: Arc<Authenticator>,
    pub transport: Transport,
    /// Charges priced fields.
    pub billing: Arc<crate::billing::Billing>,
}

/// `/graphql` (GET, POST), `/graphql/ws` and `/graphql/stream`.
pub fn router<S: Clone + Send + Sync + 'static>(state: GraphqlState) -> Router<S> {
    Router::new()
        .route(
            "/graphql",
            get(super::http::get)
                .post(super::http::post)
                .fallback(super::http::other_method),
        )
        .route("/graphql/ws", get(super::ws::upgrade))
        .route(
            "/graphql/stream",
            get(super::sse::stream).post(super::sse::stream),
        )
        .with_state(state)
}
