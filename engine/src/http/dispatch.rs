//! The path from an HTTP request to a plugin handler and back: route lookup
//! on the current snapshot, body limit, conversion into the WIT request, the
//! call, and a checked conversion of whatever the plugin answered.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{self, Caller};
use crate::front_door::{FrontDoor, refused};
use crate::identity::access::Target;
use crate::registry::Snapshot;
use crate::request::error::ApiError;
use crate::request::id::RequestId;
use crate::routes::Lookup;
use crate::runtime::bindings::types;
use crate::runtime::call::{HTTP_HANDLER, HTTP_PRICES};
use crate::runtime::{CallResult, CallSpec, LoadError, Plugin};
use futures_util::future::BoxFuture;

pub async fn plugin_route(
    State(app): State<AppState>,
    RequestId(request_id): RequestId,
    request: Request,
) -> Response {
    match dispatch(&app, request, request_id.clone()).await {
        Ok(response) => response,
        Err(e) => e.with_request_id(&request_id).into_response(),
    }
}

async fn dispatch(
    app: &AppState,
    request: Request,
    request_id: Arc<str>,
) -> Result<Response, ApiError> {
    let snapshot = app.registry.snapshot();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let routed = match snapshot.routes.lookup(&parts.method, path) {
        Ok(Lookup::Found {
            target,
            method,
            params,
        }) => Ok((target.clone(), method.clone(), params)),
        Ok(Lookup::MethodNotAllowed { allow }) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {}; allowed: {allow}",
                parts.method,
                crate::text::echo(path)
            ),
        )
        .with_header(
            header::ALLOW,
            HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("")),
        )),
        Ok(Lookup::NotFound) => Err(ApiError::not_found(path)),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            e.to_string(),
        )),
    };
    let caller = parts
        .extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or_default();
    let routed = routed.and_then(|(target, route_method, params)| {
        // The method of the handler that runs: a HEAD served by a GET
        // handler is checked as that GET.
        let target_access = Target::Route {
            plugin: &target.plugin.manifest.name,
            method: route_method.as_str(),
            path,
        };
        match app.access.check(target_access, None, caller.principal()) {
            Ok(()) => Ok((target, route_method, params)),
            Err(denied) => Err(auth::denied(&denied)),
        }
    });
    let limit = app.transport.max_request_body;
    let (target, route_method, params) = match routed {
        Ok(found) => found,
        Err(e) if has_body(&parts.headers) => {
            crate::request::body::discard(parts.version, body, limit);
            return Err(closing(e, parts.version));
        }
        Err(e) => return Err(e),
    };

    let body = match crate::request::body::read(&parts, body, limit).await {
        Ok(body) => body,
        Err(crate::request::body::BodyError::TooLarge) => {
            return Err(too_large(limit, parts.version));
        }
        Err(crate::request::body::BodyError::Unreadable(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("could not read the request body: {e}"),
            ));
        }
    };

    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "header {} is not valid UTF-8",
                    crate::text::echo(name.as_str())
                ),
            ));
        };
        headers.push((name.as_str().to_string(), value.to_string()));
    }
    let wit_request = types::HttpRequest {
        method: types::Method::from_http(&parts.method),
        path: path.to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        params,
        headers,
        // No copy when the body arrived in one piece (it is then unique).
        body: Vec::from(body),
    };

    let plugin = &target.plugin;
    let name = plugin.manifest.name.as_str();
    // A priced route holds its price before the plugin runs (the route's
    // name is only spelled out when the operator or the plugin priced
    // some route).
    let declared = plugin
        .parts
        .get::<RoutePrices>()
        .and_then(|prices| prices.of(&target.handler));
    let operation = (declared.is_some() || app.billing.prices_routes())
        .then(|| format!("{} {}", route_method, target.pattern));
    let price = operation
        .as_deref()
        .and_then(|operation| app.billing.route_price(name, operation, declared));
    let hold = match (price, &operation) {
        (Some(price), Some(operation)) if price > 0 => Some(
            app.billing
                .hold(
                    caller.principal(),
                    idempotency_key(&parts.headers)?,
                    &request_id,
                    name,
                    operation,
                    price,
                )
                .await
                .map_err(|refused| payment_refused(&refused))?,
        ),
        _ => None,
    };
    let answer = call_handler(
        plugin,
        &target.handler,
        &wit_request,
        CallSpec::new(request_id, &*target.handler)
            .caller(caller.for_plugin())
            .meter(hold.as_ref().map(crate::billing::Hold::meter)),
    )
    .await
    .map_err(|e| ApiError::from_call(name, &e, app.verbose_errors))
    .and_then(|answer| answer.map_err(|e| ApiError::from_plugin(e.code, e.message)))
    .and_then(|response| {
        into_response(
            name,
            response,
            parts.method == Method::HEAD,
            app.max_response_body,
        )
    });
    if let Some(hold) = hold {
        settle_hold(hold, answer.is_ok()).await?;
    }
    answer
}

/// Posts what the call cost (`Hold::finish`); the entry is committed
/// before the response goes out.
async fn settle_hold(hold: crate::billing::Hold, succeeded: bool) -> Result<(), ApiError> {
    hold.finish(succeeded).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "the ledger could not record a priced call");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "billing_unavailable",
            format!(
                "the call ran but its charge could not be recorded: {}",
                e.for_caller()
            ),
        )
    })
}

/// The client's `Idempotency-Key`: what makes a retried request the same
/// request to the ledger (else its request id does).
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|v| crate::billing::idempotency_key_ok(v))
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })
}

/// 402 for a caller who cannot pay, 409 for a request key already used,
/// 503 when the ledger does not answer.
pub fn payment_refused(refused: &crate::billing::Refusal) -> ApiError {
    use crate::billing::Refusal;
    let status = match refused {
        Refusal::AlreadyCharged { .. } | Refusal::InFlight { .. } => StatusCode::CONFLICT,
        Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::PAYMENT_REQUIRED,
    };
    let code = refused.code();
    let e = ApiError::new(status, code, refused.to_string());
    match refused.details() {
        serde_json::Value::Null => e,
        details => e.with_details(details),
    }
}

/// HTTP routes as a front door: the routes come with the plugin's manifest
/// (checked by `manifest.rs`), a plugin with routes must export the
/// handler, and each plugin's routes go into the snapshot's route table
/// all at once or not at all.
pub struct RoutesDoor;

/// Why a plugin's routes were refused at load.
#[derive(Debug, thiserror::Error)]
pub enum RoutesLoadError {
    #[error(
        "invalid manifest: declares {0} route(s) but does not export kiln:plugin/http-handler@0.1.0"
    )]
    NoHandler(usize),
    #[error("http-prices.prices() failed: {0}")]
    Prices(crate::runtime::CallError),
    #[error("kiln:plugin/http-prices prices {0}, which is not one of the plugin's routes")]
    UnknownRoute(String),
    #[error("kiln:plugin/http-prices prices route {0} twice")]
    PricedTwice(String),
}

/// The prices a plugin declares for its routes (`kiln:plugin/http-prices`),
/// by handler; kept in the plugin's parts only when it prices some.
pub struct RoutePrices(std::collections::HashMap<String, u64>);

impl RoutePrices {
    /// The declared price of the route whose handler is `handler`.
    pub fn of(&self, handler: &str) -> Option<u64> {
        self.0.get(handler).copied()
    }

    /// Checks what the plugin declared against its manifest's routes.
    fn checked(
        declared: Vec<crate::runtime::bindings::exports::kiln::plugin::http_prices::RoutePrice>,
        manifest: &crate::manifest::Manifest,
    ) -> Result<Self, RoutesLoadError> {
        let mut prices = std::collections::HashMap::with_capacity(declared.len());
        for price in declared {
            if !manifest.routes.iter().any(|r| r.handler == price.handler) {
                return Err(RoutesLoadError::UnknownRoute(
                    crate::text::echo(&price.handler).into_owned(),
                ));
            }
            if prices.insert(price.handler.clone(), price.micros).is_some() {
                return Err(RoutesLoadError::PricedTwice(
                    crate::text::echo(&price.handler).into_owned(),
                ));
            }
        }
        Ok(RoutePrices(prices))
    }
}

impl FrontDoor for RoutesDoor {
    fn describe<'a>(&'a self, plugin: &'a mut Plugin) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let routes = plugin.manifest.routes.len();
            if routes > 0 && !plugin.exports(&HTTP_HANDLER) {
                return Err(refused(RoutesLoadError::NoHandler(routes)));
            }
            if routes == 0 {
                return Ok(());
            }
            let asked = plugin
                .ask(&HTTP_PRICES, async |prices, store, instance| {
                    let guest = prices.load(&mut *store, &instance)?;
                    guest.call_prices(store).await
                })
                .await;
            let Some(declared) = asked else {
                return Ok(());
            };
            let declared = declared.map_err(|e| refused(RoutesLoadError::Prices(e)))?;
            let prices = RoutePrices::checked(declared, &plugin.manifest).map_err(refused)?;
            if !prices.0.is_empty() {
                plugin.parts.insert(prices);
            }
            Ok(())
        })
    }

    fn admit(&self, next: &mut Snapshot, plugin: &Arc<Plugin>) -> Result<(), String> {
        next.routes
            .add(&plugin.manifest, plugin.clone())
            .map_err(|c| c.to_string())
    }

    fn summary(&self, plugin: Option<&Plugin>) -> Vec<(&'static str, serde_json::Value)> {
        let routes: Vec<String> = plugin
            .iter()
            .flat_map(|p| p.manifest.routes.iter())
            .map(|r| format!("{} {}", r.method, r.path.as_str()))
            .collect();
        vec![("routes", serde_json::json!(routes))]
    }
}

/// Calls handler `handler` of `plugin` with `request`. The outer error is
/// the host's (limits, traps); the inner one is the plugin's answer.
pub async fn call_handler(
    plugin: &Plugin,
    handler: &str,
    request: &types::HttpRequest,
    spec: CallSpec,
) -> CallResult<types::HttpResponse> {
    plugin
        .call(&HTTP_HANDLER, spec, async |http, store, instance| {
            let guest = http.load(&mut *store, &instance)?;
            guest.call_handle(store, handler, request).await
        })
        .await
}

fn too_large(limit: usize, version: axum::http::Version) -> ApiError {
    closing(
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        ),
        version,
    )
}

/// Whether the client is sending a body with this request.
fn has_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "0")
}

/// An answer sent before the request body was read: the rest of the body
/// is still on the wire, so the connection cannot carry another request.
/// Saying so lets the client open a new one instead of reusing this one
/// and failing. (HTTP/2 has no such header: its stream ends instead.)
fn closing(e: ApiError, version: axum::http::Version) -> ApiError {
    if crate::request::body::may_close(version) {
        e.with_header(header::CONNECTION, HeaderValue::from_static("close"))
    } else {
        e
    }
}

/// Hop-by-hop and framing headers are the server's business, not a plugin's.
fn is_reserved_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

fn into_response(
    plugin: &str,
    r: types::HttpResponse,
    head: bool,
    max_body: usize,
) -> Result<Response, ApiError> {
    let bad = |what: String| {
        tracing::error!(plugin, "plugin returned an invalid response: {what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_bad_response",
            format!("plugin '{plugin}' returned an invalid response: {what}"),
        )
    };
    let status = StatusCode::from_u16(r.status)
        .map_err(|_| bad(format!("status {} is not between 100 and 999", r.status)))?;
    if r.body.len() > max_body {
        return Err(bad(format!(
            "body of {} bytes exceeds the limit of {max_body} bytes",
            r.body.len()
        )));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in r.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("header name {name:?} is invalid")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| bad(format!("value of header {name} is invalid")))?;
        if !is_reserved_response_header(&name) {
            headers.append(name, value);
        }
    }
    if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    } else {
        *response.body_mut() = Body::from(Bytes::from(r.body));
    }
    Ok(response)
}
