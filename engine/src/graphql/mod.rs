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
pub mod complete;
pub mod config;
pub mod door;
pub mod graphiql;
pub mod http;
pub mod merge;
pub mod resolver;
pub mod schema;
pub mod sdl;
pub mod sse;
pub mod state;
pub mod ws;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::runtime::Plugin;
use crate::streams::Broker;
pub use config::GraphqlConfig;
pub use door::GraphqlDoor;
pub use schema::{GraphqlSchema, RequestInfo};

/// The plugin's checked SDL fragment, when it contributes GraphQL fields.
pub fn fragment(plugin: &Plugin) -> Option<&sdl::Fragment> {
    plugin.parts.get::<sdl::Fragment>()
}

/// What the schema is built with, besides the plugins.
#[derive(Clone)]
pub struct SchemaInputs {
    pub broker: Broker,
    pub config: GraphqlConfig,
    pub limits: budget::Limits,
}

impl SchemaInputs {
    /// `max_response_bytes` and `timeout` are the HTTP server's: an
    /// answer is held to them whatever the transport.
    pub fn new(
        broker: Broker,
        config: GraphqlConfig,
        max_response_bytes: usize,
        timeout: std::time::Duration,
    ) -> Self {
        let limits = budget::Limits {
            max_fields: config.max_fields,
            max_plugin_calls: config.max_plugin_calls,
            max_response_bytes,
            max_errors: config.max_errors,
            timeout,
            ..budget::Limits::default()
        };
        SchemaInputs {
            broker,
            config,
            limits,
        }
    }
}

/// Why the plugins' fragments do not make one schema.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AssembleError {
    /// Two fragments disagree; the message names both plugins.
    #[error("{0}")]
    Conflict(String),
    /// They merge, but the result is not a valid schema.
    #[error("the merged GraphQL schema is invalid: {0}")]
    Invalid(String),
}

/// Builds the schema served by `plugins` (in load order). The error names
/// the plugins involved; the caller refuses the newest one.
pub fn assemble<'a>(
    plugins: impl IntoIterator<Item = &'a Arc<Plugin>>,
    inputs: &SchemaInputs,
) -> Result<GraphqlSchema, AssembleError> {
    let plugins: Vec<&Arc<Plugin>> = plugins.into_iter().collect();
    let fragments = plugins
        .iter()
        .filter_map(|p| fragment(p).map(|f| (p.manifest.name.as_str(), f)));
    let merged = merge::merge(fragments).map_err(AssembleError::Conflict)?;
    let resolvers: BTreeMap<String, Arc<dyn schema::Resolver>> = plugins
        .iter()
        .filter(|p| fragment(p).is_some())
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
    .map_err(|e| AssembleError::Invalid(e.to_string()))
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
            Some(schema) => execute_bounded(schema, request).await,
            None => not_ready(),
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
        let doc = request.parsed_query().ok().cloned();
        let shaped = s.clone();
        let results = s
            .schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(move |r| {
                let r = finish(r, doc.as_ref(), name.as_deref(), &shaped);
                bound(r, &limits)
            });
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

/// [`run_bounded`], on a blocking thread when the document is big.
async fn execute_bounded(schema: Arc<GraphqlSchema>, request: Request) -> Response {
    if request.query.len() <= schema.limits.inline_document_bytes {
        return run_bounded(schema, request).await;
    }
    // Parsing, counting and validating a big document is CPU work measured
    // in milliseconds: on a blocking thread it cannot hold up the async
    // workers (2 on a 2-core machine) and with them every other request,
    // the health check included.
    let handle = tokio::runtime::Handle::current();
    let run = run_bounded(schema, request);
    match tokio::task::spawn_blocking(move || handle.block_on(run)).await {
        Ok(response) => response,
        Err(_) => budget::refusal("INTERNAL", "the operation's worker thread failed"),
    }
}

/// A query or mutation within its budgets: admitted ([`admit`]), run with
/// a [`budget::CallBudget`] and the time limit, its answer bounded.
async fn run_bounded(schema: Arc<GraphqlSchema>, mut request: Request) -> Response {
    let limits = &schema.limits;
    if let Err(refused) = admit(&mut request, limits) {
        return *refused;
    }
    let doc = request.parsed_query().ok().cloned();
    let name = request.operation_name.clone();
    let request = request.data(budget::CallBudget::new(limits));
    let response = match tokio::time::timeout(limits.timeout, schema.schema.execute(request)).await
    {
        Ok(response) => finish(response, doc.as_ref(), name.as_deref(), &schema),
        Err(_) => timed_out(limits.timeout),
    };
    bound(response, limits)
}

/// The path of failed non-null fields where clients look, their parents
/// nulled, fields in selection order (see [`complete`]).
fn finish(
    mut response: Response,
    doc: Option<&async_graphql::parser::types::ExecutableDocument>,
    operation_name: Option<&str>,
    schema: &GraphqlSchema,
) -> Response {
    let failed = schema::take_non_null_failures(&mut response);
    let Some(doc) = doc else {
        return response;
    };
    let Some(op) = complete::operation(doc, operation_name) else {
        return response;
    };
    if !failed.is_empty() {
        complete::propagate_nulls(
            &mut response.data,
            doc,
            schema.schema.registry(),
            op,
            &failed,
        );
    }
    complete::follow_selection_order(&mut response.data, doc, op);
    response
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::access::AccessConfig;

    /// A plugin that answers after `wait`, noting the thread it ran on.
    struct Slow {
        wait: Duration,
        threads: Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl schema::Resolver for Slow {
        fn resolve(
            &self,
            _request: schema::ResolveRequest,
        ) -> futures_util::future::BoxFuture<'_, Result<serde_json::Value, schema::FieldError>>
        {
            let wait = self.wait;
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            Box::pin(async move {
                tokio::time::sleep(wait).await;
                Ok(serde_json::json!("late"))
            })
        }
    }

    type Threads = Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>;

    fn slow_schema(wait: Duration, limits: budget::Limits) -> (Arc<GraphqlSchema>, Threads) {
        let threads = Threads::default();
        let fragment = sdl::parse("extend type Query { slow: String }").unwrap();
        let merged = merge::merge([("slow", &fragment)]).unwrap();
        let resolvers = BTreeMap::from([(
            "slow".to_string(),
            Arc::new(Slow {
                wait,
                threads: threads.clone(),
            }) as Arc<dyn schema::Resolver>,
        )]);
        let broker = Broker::new(8, 1 << 16);
        let schema = schema::build(
            &merged,
            &resolvers,
            &broker,
            &GraphqlConfig::default(),
            &limits,
        )
        .unwrap();
        (Arc::new(schema), threads)
    }

    fn request(query: &str) -> Request {
        let access: AccessConfig = toml::from_str("default = \"public\"").unwrap();
        Request::new(query).data(RequestInfo {
            request_id: "test".into(),
            caller: Default::default(),
            access: Arc::new(access),
            billing: None,
            idempotency_key: None,
        })
    }

    fn codes(r: &Response) -> Vec<String> {
        serde_json::to_value(&r.errors)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["extensions"]["code"].as_str().map(String::from))
            .collect()
    }

    #[tokio::test]
    async fn an_operation_past_its_time_gets_a_timeout_error() {
        let limits = budget::Limits {
            timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let (schema, _) = slow_schema(Duration::from_secs(10), limits);
        let started = std::time::Instant::now();
        let r = run_bounded(schema, request("{ slow }")).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(codes(&r), ["TIMEOUT"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_big_document_runs_on_a_blocking_thread_with_the_same_budgets() {
        let limits = budget::Limits {
            max_fields: 10,
            inline_document_bytes: 64,
            ..Default::default()
        };
        let (schema, threads) = slow_schema(Duration::ZERO, limits);
        // The test body runs on this thread; a small document runs here too.
        let here = std::thread::current().id();
        let r = execute_bounded(schema.clone(), request("{ a: slow }")).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(threads.lock().unwrap().pop(), Some(here));
        // More than 64 bytes: elsewhere, within the same budgets.
        let eight = "{ a: slow b: slow c: slow d: slow e: slow f: slow g: slow h: slow }";
        let r = execute_bounded(schema.clone(), request(eight)).await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(threads.lock().unwrap().iter().all(|t| *t != here));
        let aliases: String = (0..12).map(|i| format!(" a{i}: slow")).collect();
        let r = execute_bounded(schema, request(&format!("{{{aliases} }}"))).await;
        assert_eq!(codes(&r), ["TOO_MANY_FIELDS"]);
    }

    /// A plugin answering from a function, after `delay_ms` from the
    /// field's `delay_ms` argument when it has one.
    struct Answers(fn(&schema::ResolveRequest) -> Result<serde_json::Value, schema::FieldError>);

    impl schema::Resolver for Answers {
        fn resolve(
            &self,
            request: schema::ResolveRequest,
        ) -> futures_util::future::BoxFuture<'_, Result<serde_json::Value, schema::FieldError>>
        {
            let answer = (self.0)(&request);
            let delay = request.arguments["delay_ms"].as_u64().unwrap_or(0);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                answer
            })
        }
    }

    const TODOS: &str = r#"
        type Todo { title: String!, note: String }
        extend type Query {
          item(delay_ms: Int!): String
          todos(fail: Boolean, broken: Boolean): [Todo!]!
          maybe(delay_ms: Int): Todo
          other: String
          secret: String! @auth
        }
    "#;

    fn todos(r: &schema::ResolveRequest) -> Result<serde_json::Value, schema::FieldError> {
        use serde_json::json;
        match r.field.as_str() {
            "item" => Ok(json!(format!("after {}", r.arguments["delay_ms"]))),
            "todos" if r.arguments["fail"] == true => Err(schema::FieldError {
                code: "NOT_FOUND",
                message: "no todos".into(),
            }),
            "todos" if r.arguments["broken"] == true => {
                Ok(json!([{"note": "n", "title": "a"}, {"title": null}]))
            }
            "todos" => Ok(json!([{"note": "n", "title": "a"}, {"note": "m", "title": "b"}])),
            "maybe" => Ok(json!({"title": null, "note": "x"})),
            "other" => Ok(json!("o")),
            "secret" => Ok(json!("s")),
            _ => Ok(serde_json::Value::Null),
        }
    }

    fn todo_schema() -> Arc<GraphqlSchema> {
        let fragment = sdl::parse(TODOS).unwrap();
        let merged = merge::merge([("todos", &fragment)]).unwrap();
        let resolvers = BTreeMap::from([(
            "todos".to_string(),
            Arc::new(Answers(todos)) as Arc<dyn schema::Resolver>,
        )]);
        let broker = Broker::new(8, 1 << 16);
        Arc::new(
            schema::build(
                &merged,
                &resolvers,
                &broker,
                &GraphqlConfig::default(),
                &budget::Limits::default(),
            )
            .unwrap(),
        )
    }

    async fn answer(query: &str) -> serde_json::Value {
        let r = run_bounded(todo_schema(), request(query)).await;
        serde_json::to_value(&r).unwrap()
    }

    /// The top-level keys of the answer, in the order they are sent
    /// (`serde_json::Value` would sort them).
    async fn keys(query: &str) -> Vec<String> {
        let r = run_bounded(todo_schema(), request(query)).await;
        match r.data {
            async_graphql::Value::Object(map) => map.keys().map(|k| k.to_string()).collect(),
            other => panic!("no object: {other}"),
        }
    }

    #[tokio::test]
    async fn fields_come_back_in_selection_order_whatever_order_they_finish_in() {
        // Each field finishes before the one selected before it.
        let order = keys(
            "{ z: item(delay_ms: 120) b: item(delay_ms: 80) ...F a: item(delay_ms: 0) \
             m: maybe(delay_ms: 50) { note } }
             fragment F on Query { f: item(delay_ms: 40) }",
        )
        .await;
        assert_eq!(order, ["z", "b", "f", "a", "m"]);
        // Nested objects follow their own selection: `note` before `title`
        // although the plugin's JSON has them the other way round.
        let r = run_bounded(todo_schema(), request("{ todos { title note } }")).await;
        let text = serde_json::to_string(&r.data).unwrap();
        assert_eq!(
            text,
            r#"{"todos":[{"title":"a","note":"n"},{"title":"b","note":"m"}]}"#
        );
    }

    #[tokio::test]
    async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
        // title: String! fails inside the nullable `maybe`: maybe is null,
        // the field beside it stays.
        let v = answer("{ maybe { title note } other }").await;
        assert_eq!(
            v["data"],
            serde_json::json!({ "maybe": null, "other": "o" }),
            "{v}"
        );
        assert_eq!(
            v["errors"][0]["path"],
            serde_json::json!(["maybe", "title"])
        );
        // A failed todos: [Todo!]! has no nullable parent but the root:
        // data is null, alone and beside other fields.
        for query in [
            "{ todos(fail: true) { title } }",
            "{ other todos(fail: true) { title } }",
        ] {
            let v = answer(query).await;
            assert!(v["data"].is_null(), "{query}: {v}");
            assert_eq!(v["errors"][0]["extensions"]["code"], "NOT_FOUND");
        }
        // An item of [Todo!]! whose title is null: Todo! is non-null, the
        // list is non-null, so the root goes null too.
        let v = answer("{ other todos(broken: true) { title } }").await;
        assert!(v["data"].is_null(), "{v}");
        assert_eq!(
            v["errors"][0]["path"],
            serde_json::json!(["todos", 1, "title"])
        );
        // A refused non-null field (@auth, anonymous caller) the same way.
        let v = answer("{ other secret }").await;
        assert!(v["data"].is_null(), "{v}");
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{v}"
        );
        // Aliases are followed to the field they name.
        let v = answer("{ x: maybe { t: title } y: other }").await;
        assert_eq!(v["data"], serde_json::json!({ "x": null, "y": "o" }), "{v}");
    }
}
