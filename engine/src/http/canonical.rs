//! Puts every request's path into its canonical form (`crate::path`) before
//! routing, or answers 400 when it has none (and when an HTTP/1.1 request
//! does not name exactly one Host). Everything after this layer —
//! the router, authentication, access rules, rate limits, the plugin —
//! reads the rewritten URI, so one request meets one decision.

use axum::extract::Request;
use axum::http::{StatusCode, Uri, Version, header, uri::PathAndQuery};
use axum::response::{IntoResponse, Response};

use crate::path::canonical;
use crate::request::error::ApiError;
use crate::request::id::RequestId;

/// Rewrites `request`'s path to its canonical form; when it has none, the
/// 400 that refuses it. Runs before routing (`http::Front`).
pub fn canonicalize(request: &mut Request) -> Result<(), Box<Response>> {
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is 400.
    // (HTTP/2 carries the authority in the URI instead.)
    if request.version() == Version::HTTP_11 {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        if hosts.next().is_none() || hosts.next().is_some() {
            return Err(Box::new(refuse(
                request,
                "bad_request",
                "an HTTP/1.1 request needs exactly one Host header",
            )));
        }
    }
    let uri = request.uri();
    // `OPTIONS *` has no path to normalise; the router answers it.
    if uri.path() == "*" {
        return Ok(());
    }
    match canonical(uri.path()) {
        Ok(path) if path == uri.path() => Ok(()),
        Ok(path) => match rewrite(uri, &path) {
            Some(uri) => {
                *request.uri_mut() = uri;
                Ok(())
            }
            None => Err(Box::new(refuse(
                request,
                "bad_path",
                "path cannot be rewritten",
            ))),
        },
        Err(e) => Err(Box::new(refuse(request, "bad_path", &e.to_string()))),
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
