//! Puts every request's path into its canonical form (`crate::path`) before
//! routing, or answers 400 when it has none (and when an HTTP/1.1 request
//! does not name exactly one Host). Everything after this layer —
//! the router, authentication, access rules, rate limits, the plugin —
//! reads the rewritten URI, so one request meets one decision.

use axum::extract::Request;
use axum::http::{StatusCode, Uri, Version, header, uri::PathAndQuery};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::path::canonical;
use crate::request::error::ApiError;
use crate::request::id::RequestId;

pub async fn layer(mut request: Request, next: Next) -> Response {
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is 400.
    // (HTTP/2 carries the authority in the URI instead.)
    if request.version() == Version::HTTP_11 {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        if hosts.next().is_none() || hosts.next().is_some() {
            return refuse(
                &request,
                "bad_request",
                "an HTTP/1.1 request needs exactly one Host header",
            );
        }
    }
    let uri = request.uri();
    // `OPTIONS *` has no path to normalise; the router answers it.
    if uri.path() == "*" {
        return next.run(request).await;
    }
    match canonical(uri.path()) {
        Ok(path) if path == uri.path() => next.run(request).await,
        Ok(path) => match rewrite(uri, &path) {
            Some(uri) => {
                *request.uri_mut() = uri;
                // The outer router recorded the spelling as sent; the inner
                // one records the canonical URI when this one is gone.
                request
                    .extensions_mut()
                    .remove::<axum::extract::OriginalUri>();
                next.run(request).await
            }
            None => refuse(&request, "bad_path", "path cannot be rewritten"),
        },
        Err(e) => refuse(&request, "bad_path", &e.to_string()),
    }
}

fn rewrite(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")).ok()?,
        None => PathAndQuery::try_from(path).ok()?,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

fn refuse(request: &Request, code: &'static str, reason: &str) -> Response {
    let mut e = ApiError::new(StatusCode::BAD_REQUEST, code, reason);
    e.request_id = Some(RequestId::of(request.extensions()).to_string());
    e.into_response()
}
