//! GraphQL over HTTP (`GET`/`POST /graphql`), following the GraphQL-over-HTTP
//! specification: media type negotiation between
//! `application/graphql-response+json` and `application/json`, 4xx for
//! requests that cannot be executed, no mutations over GET. Browsers asking
//! for HTML get GraphiQL.

use async_graphql::parser::types::OperationType;
use async_graphql::{Executor, Request, Response, Variables};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};

use super::state::GraphqlState;
use super::{LiveSchema, RequestInfo};
use crate::identity::Caller;
use crate::request::id::RequestId;

pub const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The media type a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    GraphqlResponse,
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        }
    }
}

/// What the client accepts, from its `Accept` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepts {
    Graphql(Media),
    Html,
    Nothing,
}

/// Chooses the response media type. A missing header counts as
/// `application/json` (the spec's legacy rule); `text/html` wins only when
/// neither GraphQL type is named explicitly, so GraphiQL never shadows an API
/// client.
pub fn negotiate(accept: Option<&str>) -> Accepts {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Accepts::Graphql(Media::Json);
    };
    let types: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|part| {
            let mut bits = part.split(';');
            let ty = bits.next()?.trim().to_ascii_lowercase();
            let q = bits
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0).then_some((ty, q))
        })
        .collect();
    let q = |t: &str| {
        types
            .iter()
            .filter(|(ty, _)| ty == t)
            .map(|(_, q)| *q)
            .fold(0.0_f32, f32::max)
    };
    let graphql = q(GRAPHQL_RESPONSE);
    let json = q("application/json");
    if graphql > 0.0 && graphql >= json {
        return Accepts::Graphql(Media::GraphqlResponse);
    }
    if json > 0.0 {
        return Accepts::Graphql(Media::Json);
    }
    if q("text/html") > 0.0 {
        return Accepts::Html;
    }
    if q("*/*") > 0.0 || q("application/*") > 0.0 {
        return Accepts::Graphql(Media::Json);
    }
    Accepts::Nothing
}

/// The request parameters, from a JSON body or a query string.
#[derive(Debug, Default)]
pub struct Params {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
    /// The document, once [`Params::operation_type`] parsed it: handed to
    /// the request so that it is not parsed twice.
    parsed: Option<async_graphql::parser::types::ExecutableDocument>,
}

impl Params {
    /// From a POST body (already known to be JSON).
    pub fn from_json(body: &[u8]) -> Result<Params, String> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(match value {
                serde_json::Value::Array(_) => {
                    "batched requests (a JSON array) are not supported; send one object".into()
                }
                _ => "the request body must be a JSON object with a \"query\" string".into(),
            });
        };
        let query = match map.remove("query") {
            Some(serde_json::Value::String(q)) => q,
            Some(_) => return Err("\"query\" must be a string".into()),
            None => return Err("the request has no \"query\"".into()),
        };
        let operation_name = match map.remove("operationName") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => return Err("\"operationName\" must be a string or null".into()),
        };
        Ok(Params {
            query,
            operation_name,
            variables: object_or_null("variables", map.remove("variables"))?,
            extensions: object_or_null("extensions", map.remove("extensions"))?,
            parsed: None,
        })
    }

    /// From a GET query string; `variables` and `extensions` are JSON text.
    pub fn from_query(raw: &str) -> Result<Params, String> {
        let mut params = Params::default();
        let mut query = None;
        for (k, v) in form_urlencoded(raw)? {
            match k.as_str() {
                "query" => query = Some(v),
                "operationName" => params.operation_name = Some(v).filter(|s| !s.is_empty()),
                "variables" if !v.is_empty() => {
                    let parsed = serde_json::from_str(&v)
                        .map_err(|e| format!("\"variables\" is not valid JSON: {e}"))?;
                    params.variables = object_or_null("variables", Some(parsed))?;
                }
                "extensions" if !v.is_empty() => {
                    let parsed = serde_json::from_str(&v)
                        .map_err(|e| format!("\"extensions\" is not valid JSON: {e}"))?;
                    params.extensions = object_or_null("extensions", Some(parsed))?;
                }
                _ => {}
            }
        }
        params.query = query.ok_or("the request has no \"query\" parameter")?;
        Ok(params)
    }

    /// The operation this request would run, if the document parses and
    /// the operation can be found; execution reports the errors otherwise.
    /// The parsed document is kept for [`Params::into_request`].
    pub fn operation_type(&mut self) -> Option<OperationType> {
        if self.parsed.is_none() {
            self.parsed = async_graphql::parser::parse_query(&self.query).ok();
        }
        operation_in(self.parsed.as_ref()?, self.operation_name.as_deref())
    }

    pub fn into_request(self, info: RequestInfo) -> Request {
        let mut request = Request::new(self.query).data(info);
        if let Some(doc) = self.parsed {
            request.set_parsed_query(doc);
        }
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(vars) = self.variables {
            request = request.variables(Variables::from_json(serde_json::Value::Object(vars)));
        }
        if let Some(ext) = self.extensions {
            for (k, v) in ext {
                if let Ok(v) = async_graphql::Value::from_json(v) {
                    request.extensions.insert(k, v);
                }
            }
        }
        request
    }
}

fn object_or_null(
    name: &str,
    value: Option<serde_json::Value>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("\"{name}\" must be a JSON object or null")),
    }
}

/// `application/x-www-form-urlencoded` pairs: `+` is a space, then the
/// route table's percent-decoding.
fn form_urlencoded(raw: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |s: &str| {
        crate::routes::percent_decode(&s.replace('+', " "))
            .ok_or_else(|| "the query string is not UTF-8 once percent-decoded".to_string())
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Whether the response reports a request error (the document did not
/// parse or validate, or the variables did not coerce): no data, and errors
/// that point at no field.
fn is_request_error(response: &Response) -> bool {
    !response.errors.is_empty()
        && matches!(response.data, async_graphql::Value::Null)
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// Serialises a response; a request error in `application/graphql-response+json`
/// gets 400 and no `data` entry, in `application/json` 200 (both per spec).
pub fn respond(media: Media, response: Response) -> HttpResponse {
    /// The response body, fields in selection order (async-graphql's
    /// `Value` keeps it; a detour through `serde_json::Value` would not).
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a async_graphql::Value>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        errors: &'a [async_graphql::ServerError],
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
    }
    let request_error = is_request_error(&response);
    let body = Body {
        data: (!request_error).then_some(&response.data),
        errors: &response.errors,
        extensions: &response.extensions,
    };
    let status = if request_error && media == Media::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.content_type()),
        )],
        bytes,
    )
        .into_response()
}

/// A request that cannot be executed: its parameters are malformed.
pub fn bad_request(media: Media, status: StatusCode, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.content_type()),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The request id and caller the HTTP layers put in `extensions`, and the
/// client's `Idempotency-Key` (which, with each priced field's path, names
/// the field's charge across retries); the error to answer when the key is
/// not 1 to 255 visible ASCII characters.
pub fn request_info(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    state: &GraphqlState,
) -> Result<RequestInfo, &'static str> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|k| crate::billing::idempotency_key_ok(k))
                .map(std::sync::Arc::from)
                .ok_or("Idempotency-Key must be 1 to 255 visible ASCII characters")?,
        ),
    };
    Ok(RequestInfo {
        request_id: RequestId::of(extensions),
        caller: extensions.get::<Caller>().cloned().unwrap_or_default(),
        access: state.access.clone(),
        billing: Some(state.billing.clone()),
        idempotency_key,
    })
}

/// `GET /graphql`: a query in the query string, or GraphiQL for browsers.
pub async fn get(
    State(state): State<GraphqlState>,
    RawQuery(raw): RawQuery,
    request: axum::extract::Request,
) -> HttpResponse {
    let accept = header_str(request.headers(), header::ACCEPT);
    let media = match negotiate(accept) {
        Accepts::Html if raw.as_deref().is_none_or(|q| !q.contains("query=")) => {
            return if state.config.graphiql {
                super::graphiql::page()
            } else {
                bad_request(
                    Media::Json,
                    StatusCode::NOT_FOUND,
                    "GraphiQL is disabled (graphql.graphiql = false)",
                )
            };
        }
        Accepts::Html => Media::Json,
        Accepts::Graphql(media) => media,
        Accepts::Nothing => return not_acceptable(),
    };
    let mut params = match Params::from_query(raw.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return bad_request(media, StatusCode::BAD_REQUEST, &e),
    };
    match params.operation_type() {
        Some(OperationType::Mutation) => {
            let mut r = bad_request(
                media,
                StatusCode::METHOD_NOT_ALLOWED,
                "mutations are not allowed over GET; send them with POST",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        Some(OperationType::Subscription) => {
            return bad_request(
                media,
                StatusCode::BAD_REQUEST,
                "subscriptions are served at /graphql/ws (WebSocket) and /graphql/stream (SSE)",
            );
        }
        _ => {}
    }
    let info = match request_info(request.extensions(), request.headers(), &state) {
        Ok(info) => info,
        Err(message) => return bad_request(media, StatusCode::BAD_REQUEST, message),
    };
    let response = LiveSchema(state.registry.clone())
        .execute(params.into_request(info))
        .await;
    respond(media, response)
}

/// `POST /graphql`: a JSON body `{query, operationName?, variables?, extensions?}`.
pub async fn post(
    State(state): State<GraphqlState>,
    request: axum::extract::Request,
) -> HttpResponse {
    let (parts, body) = request.into_parts();
    let media = match negotiate(header_str(&parts.headers, header::ACCEPT)) {
        Accepts::Graphql(media) => media,
        Accepts::Html => Media::Json,
        Accepts::Nothing => return not_acceptable(),
    };
    if let Err((status, message)) = check_json_content_type(&parts.headers) {
        return bad_request(media, status, &message);
    }
    let body: Bytes =
        match crate::request::body::read(&parts, body, state.transport.max_request_body).await {
            Ok(b) => b,
            Err(crate::request::body::BodyError::TooLarge) => {
                let mut r = bad_request(
                    media,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "the request body exceeds {} bytes",
                        state.transport.max_request_body
                    ),
                );
                if crate::request::body::may_close(parts.version) {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return r;
            }
            Err(crate::request::body::BodyError::Unreadable(e)) => {
                return bad_request(
                    media,
                    StatusCode::BAD_REQUEST,
                    &format!("could not read the request body: {e}"),
                );
            }
        };
    let mut params = match Params::from_json(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(media, StatusCode::BAD_REQUEST, &e),
    };
    if params.operation_type() == Some(OperationType::Subscription) {
        return bad_request(
            media,
            StatusCode::BAD_REQUEST,
            "subscriptions are served at /graphql/ws (WebSocket) and /graphql/stream (SSE)",
        );
    }
    let info = match request_info(&parts.extensions, &parts.headers, &state) {
        Ok(info) => info,
        Err(message) => return bad_request(media, StatusCode::BAD_REQUEST, message),
    };
    let response = LiveSchema(state.registry.clone())
        .execute(params.into_request(info))
        .await;
    respond(media, response)
}

/// Other methods on `/graphql`.
pub async fn other_method(method: Method) -> HttpResponse {
    let mut r = bad_request(
        Media::Json,
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not supported on /graphql; use GET or POST"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    r
}

/// POST bodies must be JSON in UTF-8.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let Some(ct) = header_str(headers, header::CONTENT_TYPE) else {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request has no Content-Type; send application/json".into(),
        ));
    };
    let mut bits = ct.split(';');
    let essence = bits.next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {essence} is not supported; send application/json"),
        ));
    }
    for p in bits {
        if let Some(charset) = p.trim().to_ascii_lowercase().strip_prefix("charset=")
            && charset.trim_matches('"') != "utf-8"
        {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("charset {charset} is not supported; send UTF-8"),
            ));
        }
    }
    Ok(())
}

fn not_acceptable() -> HttpResponse {
    bad_request(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        "accept application/graphql-response+json or application/json",
    )
}

pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The type of the operation of `doc` that `operation_name` picks.
pub fn operation_in(
    doc: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<OperationType> {
    super::complete::operation(doc, operation_name).map(|op| op.ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_media_type() {
        use Accepts::*;
        let cases = [
            (None, Graphql(Media::Json)),
            (Some(""), Graphql(Media::Json)),
            (
                Some("application/graphql-response+json"),
                Graphql(Media::GraphqlResponse),
            ),
            (
                Some("application/graphql-response+json, application/json;q=0.9"),
                Graphql(Media::GraphqlResponse),
            ),
            (Some("application/json"), Graphql(Media::Json)),
            (
                Some("application/json, application/graphql-response+json;q=0.1"),
                Graphql(Media::Json),
            ),
            (Some("*/*"), Graphql(Media::Json)),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                Html,
            ),
            (Some("text/plain"), Nothing),
            (Some("application/json;q=0"), Nothing),
        ];
        for (accept, expected) in cases {
            assert_eq!(negotiate(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn json_bodies_are_checked_field_by_field() {
        let ok = Params::from_json(
            br#"{"query":"{a}","operationName":null,"variables":{"x":1},"extensions":null}"#,
        )
        .unwrap();
        assert_eq!(ok.query, "{a}");
        assert_eq!(ok.variables.unwrap()["x"], 1);
        let cases: [(&[u8], &str); 7] = [
            (b"{", "not valid JSON"),
            (b"[]", "batched"),
            (b"1", "JSON object"),
            (br#"{}"#, "no \"query\""),
            (br#"{"query":1}"#, "\"query\" must be a string"),
            (
                br#"{"query":"{a}","variables":"x"}"#,
                "\"variables\" must be",
            ),
            (
                br#"{"query":"{a}","operationName":false}"#,
                "\"operationName\" must be",
            ),
        ];
        for (body, expected) in cases {
            let e = Params::from_json(body).unwrap_err();
            assert!(
                e.contains(expected),
                "{}: {e}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn query_strings_decode_and_check_json_parameters() {
        let p =
            Params::from_query("query=%7B%20a%20%7D&variables=%7B%22x%22%3A1%7D&operationName=")
                .unwrap();
        assert_eq!(p.query, "{ a }");
        assert_eq!(p.variables.unwrap()["x"], 1);
        assert_eq!(p.operation_name, None);
        assert!(
            Params::from_query("query=x&variables=%5B%5D")
                .unwrap_err()
                .contains("\"variables\" must be")
        );
        assert!(
            Params::from_query("query=x&variables=%7B")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(Params::from_query("").unwrap_err().contains("no \"query\""));
        let pairs = form_urlencoded("a=%zz+b&c%2Bd=%2B&e").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "%zz b".into()),
                ("c+d".into(), "+".into()),
                ("e".into(), String::new())
            ]
        );
        assert!(
            Params::from_query("query=%FF")
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn operation_types_are_found_before_execution() {
        let p = |q: &str, op: Option<&str>| Params {
            query: q.into(),
            operation_name: op.map(Into::into),
            ..Default::default()
        };

        assert_eq!(
            p("mutation { a }", None).operation_type(),
            Some(OperationType::Mutation)
        );
        assert_eq!(
            p("{ a }", None).operation_type(),
            Some(OperationType::Query)
        );
        let two = "query A { a } mutation B { b }";
        assert_eq!(
            p(two, Some("B")).operation_type(),
            Some(OperationType::Mutation)
        );
        assert_eq!(p(two, None).operation_type(), None);
        let named = "mutation M { b }";
        assert_eq!(
            p(named, None).operation_type(),
            Some(OperationType::Mutation)
        );
        assert_eq!(p("{", None).operation_type(), None);
    }

    #[test]
    fn content_types_must_be_json_in_utf8() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(check_json_content_type(&h("application/json")).is_ok());
        assert!(check_json_content_type(&h("application/json; charset=utf-8")).is_ok());
        assert!(check_json_content_type(&h("application/json; charset=latin1")).is_err());
        assert!(check_json_content_type(&h("text/plain")).is_err());
        assert!(check_json_content_type(&HeaderMap::new()).is_err());
    }
}
