//! GraphQL over server-sent events at `/graphql/stream`, the `graphql-sse`
//! protocol in "distinct connections" mode: each request is one operation
//! on its own response stream of `next` events, closed by a `complete` event.
//! Queries and mutations stream one result; subscriptions one per message.

use std::convert::Infallible;
use std::time::Duration;

use async_graphql::Executor;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};

use super::LiveSchema;
use super::http::{Media, Params, bad_request, check_json_content_type, header_str, request_info};
use super::state::GraphqlState;

pub async fn stream(
    State(state): State<GraphqlState>,
    RawQuery(raw): RawQuery,
    request: axum::extract::Request,
) -> Response {
    let client = state.transport.client_key(&request);
    let held = match state
        .transport
        .take(&client, crate::streams::limits::Kind::Stream)
    {
        Ok(held) => held,
        Err(refused) => return refused.into_response(),
    };
    let (parts, body) = request.into_parts();
    let accepts_events = header_str(&parts.headers, header::ACCEPT).is_some_and(|a| {
        a.split(',')
            .any(|t| t.trim().starts_with("text/event-stream"))
    });
    if !accepts_events {
        return bad_request(
            Media::Json,
            StatusCode::NOT_ACCEPTABLE,
            "this endpoint streams server-sent events: send Accept: text/event-stream",
        );
    }
    let params = if parts.method == Method::GET {
        Params::from_query(raw.as_deref().unwrap_or(""))
    } else {
        if let Err((status, message)) = check_json_content_type(&parts.headers) {
            return bad_request(Media::Json, status, &message);
        }
        match crate::request::body::read(&parts, body, state.transport.max_request_body).await {
            Ok(bytes) => Params::from_json(&bytes),
            Err(crate::request::body::BodyError::Unreadable(e)) => {
                return bad_request(
                    Media::Json,
                    StatusCode::BAD_REQUEST,
                    &format!("could not read the request body: {e}"),
                );
            }
            Err(crate::request::body::BodyError::TooLarge) => {
                return bad_request(
                    Media::Json,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "the request body exceeds {} bytes",
                        state.transport.max_request_body
                    ),
                );
            }
        }
    };
    let mut params = match params {
        Ok(p) => p,
        Err(e) => return bad_request(Media::Json, StatusCode::BAD_REQUEST, &e),
    };
    if parts.method == Method::GET
        && params.operation_type() == Some(async_graphql::parser::types::OperationType::Mutation)
    {
        let mut r = bad_request(
            Media::Json,
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are not allowed over GET; send them with POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, axum::http::HeaderValue::from_static("POST"));
        return r;
    }
    let operation = params.operation_type();
    let subscription = match operation {
        Some(async_graphql::parser::types::OperationType::Subscription) => {
            match state
                .transport
                .take(&client, crate::streams::limits::Kind::Subscription)
            {
                Ok(held) => Some(held),
                Err(refused) => return refused.into_response(),
            }
        }
        _ => None,
    };
    let info = match request_info(&parts.extensions, &parts.headers, &state) {
        Ok(info) => info,
        Err(message) => return bad_request(Media::Json, StatusCode::BAD_REQUEST, message),
    };
    let request = params.into_request(info);
    let results = LiveSchema(state.registry.clone()).execute_stream(request, None);
    // At shutdown a subscription's stream ends here, and the `complete`
    // event below still goes out: the client sees a finished stream, not a
    // dropped connection.
    let results = super::ends_at_shutdown(operation, results, &state.transport.shutdown)
        .map(move |response| {
            // The stream's places are given back when it ends or is dropped.
            let _held = (&held, &subscription);
            let data = serde_json::to_string(&response).unwrap_or_else(|e| {
                serde_json::json!({ "errors": [{ "message": format!("cannot encode the result: {e}") }] })
                    .to_string()
            });
            Ok::<_, Infallible>(Event::default().event("next").data(data))
        })
        .chain(stream::once(async {
            Ok(Event::default().event("complete").data(""))
        }));
    Sse::new(results)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(12)))
        .into_response()
}
