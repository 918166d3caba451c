use serde::de::DeserializeOwned;

use crate::bindings::kiln::plugin::types;
use crate::{Error, Method, Result};

/// An incoming HTTP request, as routed by the host.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path as sent by the client, without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Route parameters, decoded, in route order.
    pub params: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<types::HttpRequest> for Request {
    fn from(r: types::HttpRequest) -> Self {
        Request {
            method: r.method,
            path: r.path,
            query: r.query,
            params: r.params,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl Request {
    /// The method as sent on the wire, e.g. `"GET"`.
    pub fn method_name(&self) -> &str {
        crate::router::method_name(&self.method)
    }

    /// The value of the route parameter `{name}` (or `{*name}`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every query parameter, percent-decoded, in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        query_pairs(&self.query).collect()
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::bad_request(format!("request body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`; a clear 400 when it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if self.body.is_empty() {
            return Err(Error::bad_request("request body is empty; expected JSON"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request(format!("request body is not valid JSON: {e}")))
    }
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str) -> Request {
        Request {
            method: Method::Get,
            path: "/".into(),
            query: query.into(),
            params: vec![("id".into(), "7".into())],
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"a":1}"#.to_vec(),
        }
    }

    #[test]
    fn query_params_are_decoded() {
        let r = req("q=hello+world&x=%41%42&bad=%zz&flag");
        assert_eq!(r.query_param("q").as_deref(), Some("hello world"));
        assert_eq!(r.query_param("x").as_deref(), Some("AB"));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("missing"), None);
    }

    #[test]
    fn trailing_percent_is_kept() {
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("a%"), "a%");
    }

    #[test]
    fn headers_are_case_insensitive_and_params_found() {
        let r = req("");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.param("id"), Some("7"));
        assert_eq!(r.param("nope"), None);
    }

    #[test]
    fn json_errors_are_bad_requests() {
        let mut r = req("");
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["a"], 1);
        r.body = b"{".to_vec();
        assert_eq!(
            r.json::<serde_json::Value>().unwrap_err().code,
            crate::ErrorCode::BadRequest
        );
        r.body.clear();
        assert!(
            r.json::<serde_json::Value>()
                .unwrap_err()
                .message
                .contains("empty")
        );
    }
}
