//! What the front doors that hold a connection open (GraphQL over
//! WebSocket and SSE, MCP's event streams) share: the body limit, the
//! engine-wide places for long-lived streams, who a stream is counted
//! against, and the shutdown signal such streams end themselves on.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use super::client::ClientIps;
use super::error::ApiError;
use crate::streams::limits::{Held, Kind, Refused, StreamSlots};

#[derive(Clone)]
pub struct Transport {
    /// `http.max_request_body`, also the bound of one WebSocket message.
    pub max_request_body: usize,
    /// WebSockets, event streams and subscriptions open now, bounded.
    pub streams: StreamSlots,
    pub clients: ClientIps,
    /// Cancelled when the engine starts to shut down: streams that would
    /// otherwise never end (subscriptions, event streams) watch it and end
    /// themselves, so the server's wait for open connections is short.
    pub shutdown: CancellationToken,
}

impl Transport {
    /// Who a bounded resource of `request` is counted against.
    pub fn client_key(&self, request: &Request) -> String {
        self.clients.key(request)
    }

    /// A place for one more long-lived stream of `client`.
    pub fn take(&self, client: &str, kind: Kind) -> Result<Held, StreamRefused> {
        self.streams.take(client, kind).map_err(StreamRefused)
    }

    /// A place for one more long-lived stream of the client of `request`.
    pub fn take_stream(&self, request: &Request) -> Result<Held, StreamRefused> {
        self.take(&self.client_key(request), Kind::Stream)
    }
}

/// A stream refused by `[streams]`; answered 503 or 429 with `Retry-After`.
#[derive(Debug)]
pub struct StreamRefused(pub Refused);

impl IntoResponse for StreamRefused {
    fn into_response(self) -> Response {
        ApiError::new(self.0.status(), "too_many_streams", self.0.to_string())
            .with_header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            )
            .into_response()
    }
}
