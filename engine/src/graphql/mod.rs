//! GraphQL: plugins contribute SDL fragments; the host merges them into one
//! live schema and serves it over HTTP (`/graphql`), WebSocket
//! (`/graphql/ws`) and server-sent events (`/graphql/stream`).
//!
//! - [`sdl`]: one plugin's fragment, parsed and checked (pure).
//! - [`merge`]: every fragment into one model that says who resolves what (pure).
//! - [`schema`]: the model made executable (`async_graphql::dynamic`).
//! - [`http`], [`ws`], [`sse`]: the transports; [`graphiql`]: the browser IDE.
//!
//! Architecture invariant: the schema is rebuilt whenever the set of plugins
//! changes and is published in the same registry snapshot as the routes, so
//! a request sees one consistent set of plugins.

pub mod graphiql;
pub mod http;
pub mod merge;
pub mod schema;
pub mod sdl;
pub mod sse;
pub mod ws;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::config::GraphqlConfig;
use crate::registry::Registry;
use crate::runtime::Plugin;
use crate::streams::Broker;
pub use schema::{GraphqlSchema, RequestInfo};

/// What the schema is built with, besides the plugins.
#[derive(Clone)]
pub struct SchemaInputs {
    pub broker: Broker,
    pub config: GraphqlConfig,
}

/// Builds the schema served by `plugins` (in load order). The error names
/// the plugins involved; the caller refuses the newest one.
pub fn assemble<'a>(
    plugins: impl IntoIterator<Item = &'a Arc<Plugin>>,
    inputs: &SchemaInputs,
) -> Result<GraphqlSchema, String> {
    let plugins: Vec<&Arc<Plugin>> = plugins.into_iter().collect();
    let fragments = plugins
        .iter()
        .filter_map(|p| p.graphql.as_ref().map(|f| (p.manifest.name.as_str(), f)));
    let merged = merge::merge(fragments)?;
    let resolvers: BTreeMap<String, Arc<dyn schema::Resolver>> = plugins
        .iter()
        .filter(|p| p.graphql.is_some())
        .map(|p| {
            let r: Arc<dyn schema::Resolver> = (*p).clone();
            (p.manifest.name.clone(), r)
        })
        .collect();
    schema::build(&merged, &resolvers, &inputs.broker, &inputs.config)
        .map_err(|e| format!("the merged GraphQL schema is invalid: {e}"))
}

/// `results` of an operation of type `operation`, ended when `shutdown` is
/// cancelled unless it is a query or a mutation. A subscription never ends
/// by itself; ended, its transport sends `complete` and the connection can
/// close within the shutdown grace period. A query or mutation in flight is
/// answered: it ends on its own, bounded by the grace period.
pub fn ends_at_shutdown(
    operation: Option<OperationType>,
    results: BoxStream<'static, Response>,
    shutdown: &CancellationToken,
) -> BoxStream<'static, Response> {
    match operation {
        Some(OperationType::Query | OperationType::Mutation) => results,
        // A subscription, or a document without a runnable operation (it
        // fails at once, so ending it changes nothing).
        _ => results
            .take_until(shutdown.clone().cancelled_owned())
            .boxed(),
    }
}

/// The schema of the current snapshot, looked up per operation: an open
/// WebSocket runs each new operation on the schema of that moment, while a
/// subscription already running keeps the schema it started on.
#[derive(Clone)]
pub struct LiveSchema(pub Arc<Registry>);

impl LiveSchema {
    fn current(&self) -> Option<Arc<GraphqlSchema>> {
        self.0.snapshot().graphql.clone()
    }
}

fn not_ready() -> Response {
    Response::from_errors(vec![ServerError::new(
        "the GraphQL schema is not ready yet; try again shortly",
        None,
    )])
}

impl Executor for LiveSchema {
    async fn execute(&self, request: Request) -> Response {
        match self.current() {
            Some(s) => schema::finish_response(s.schema.execute(request).await),
            None => not_ready(),
        }
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        match self.current() {
            Some(s) => s
                .schema
                .execute_stream_with_session_data(request, session_data.unwrap_or_default())
                .map(schema::finish_response)
                .boxed(),
            None => stream::once(async { not_ready() }).boxed(),
        }
    }
}
