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

pub mod budget;
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
    pub limits: budget::Limits,
}

impl SchemaInputs {
    pub fn new(broker: Broker, config: &crate::config::Config) -> Self {
        SchemaInputs {
            broker,
            config: config.graphql.clone(),
            limits: budget::Limits {
                max_fields: config.graphql.max_fields,
                max_plugin_calls: config.graphql.max_plugin_calls,
                max_response_bytes: usize::try_from(config.http.max_response_body.0)
                    .unwrap_or(usize::MAX),
                max_errors: config.graphql.max_errors,
                timeout: std::time::Duration::from_millis(config.http.request_timeout_ms),
                ..budget::Limits::default()
            },
        }
    }
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
    schema::build(
        &merged,
        &resolvers,
        &inputs.broker,
        &inputs.config,
        &inputs.limits,
    )
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
        let Some(schema) = self.current() else {
            return not_ready();
        };
        let limits = schema.limits.clone();
        let big = request.query.len() > limits.inline_document_bytes;
        let run = run_bounded(schema, request);
        if !big {
            return run.await;
        }
        // Parsing, counting and validating a big document is CPU work
        // measured in milliseconds: on a blocking thread it cannot hold up
        // the async workers (2 on a 2-core machine) and with them every
        // other request, the health check included.
        let handle = tokio::runtime::Handle::current();
        match tokio::task::spawn_blocking(move || handle.block_on(run)).await {
            Ok(response) => response,
            Err(_) => budget::refusal("INTERNAL", "the operation's worker thread failed"),
        }
    }

    /// Every operation over a WebSocket comes here (the protocol streams
    /// queries too), with the connection's identity in `session_data`: a
    /// query or mutation gets the same budgets and time limit as over HTTP.
    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let Some(s) = self.current() else {
            return stream::once(async { not_ready() }).boxed();
        };
        if let Err(refused) = admit(&mut request, &s.limits) {
            return stream::once(async move { *refused }).boxed();
        }
        let name = request.operation_name.clone();
        let operation = request
            .parsed_query()
            .ok()
            .and_then(|doc| http::operation_in(doc, name.as_deref()));
        let single = matches!(
            operation,
            Some(OperationType::Query | OperationType::Mutation)
        );
        if single {
            request = request.data(budget::CallBudget::new(&s.limits));
        }
        let limits = s.limits.clone();
        let results = s
            .schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(move |r| bound(schema::finish_response(r), &limits));
        if !single {
            return results.boxed();
        }
        let timeout = s.limits.timeout;
        stream::once(async move {
            match tokio::time::timeout(timeout, results.into_future()).await {
                Ok((Some(response), _)) => response,
                Ok((None, _)) => budget::refusal("INTERNAL", "the operation gave no answer"),
                Err(_) => timed_out(timeout),
            }
        })
        .boxed()
    }
}

fn timed_out(timeout: std::time::Duration) -> Response {
    budget::refusal(
        "TIMEOUT",
        format!(
            "the operation took longer than {} ms (http.request_timeout_ms)",
            timeout.as_millis()
        ),
    )
}

/// A query or mutation within its budgets: admitted ([`admit`]), run with
/// a [`budget::CallBudget`] and the time limit, its answer bounded.
async fn run_bounded(schema: Arc<GraphqlSchema>, mut request: Request) -> Response {
    let limits = &schema.limits;
    if let Err(refused) = admit(&mut request, limits) {
        return *refused;
    }
    let request = request.data(budget::CallBudget::new(limits));
    let response = match tokio::time::timeout(limits.timeout, schema.schema.execute(request)).await
    {
        Ok(response) => schema::finish_response(response),
        Err(_) => timed_out(limits.timeout),
    };
    bound(response, limits)
}

/// Parses the document once (execution reuses it) and refuses it when it
/// selects more fields than `graphql.max_fields` once fragments are
/// expanded: before validation, whose work grows with that number.
fn admit(request: &mut Request, limits: &budget::Limits) -> Result<(), Box<Response>> {
    let doc = match request.parsed_query() {
        Ok(doc) => doc,
        Err(e) => {
            return Err(Box::new(budget::bound_errors(
                Response::from_errors(vec![e]),
                limits.max_errors,
            )));
        }
    };
    let fields =
        budget::count_fields(doc).map_err(|m| Box::new(budget::refusal("TOO_MANY_FIELDS", m)))?;
    if fields > limits.max_fields {
        let fields = if fields == usize::MAX {
            format!("more than {}", usize::MAX - 1)
        } else {
            fields.to_string()
        };
        return Err(Box::new(budget::refusal(
            "TOO_MANY_FIELDS",
            format!(
                "the operation selects {fields} fields once its fragments are expanded; \
                 graphql.max_fields allows {}",
                limits.max_fields
            ),
        )));
    }
    Ok(())
}

/// At most `graphql.max_errors` errors, and no answer longer than
/// `http.max_response_body`: a longer one is replaced by an error.
fn bound(response: Response, limits: &budget::Limits) -> Response {
    let response = budget::bound_errors(response, limits.max_errors);
    let bytes = budget::json_len_of(&response);
    if bytes > limits.max_response_bytes {
        return budget::too_large(bytes, limits.max_response_bytes);
    }
    response
}
