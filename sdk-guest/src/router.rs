use crate::bindings::kiln::plugin::types;
use crate::{Request, Response, Result};

/// An HTTP method, as in the WIT contract.
pub use types::Method;

/// A route handler: a plain function from request to response.
pub type Handler = fn(Request) -> Result<Response>;

/// One declared route.
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// The id the host passes back to `handle`: `"<METHOD> <path>"`.
    pub id: String,
    pub handler: Handler,
    /// What a call costs, in micro-units (1,000,000 = $1), if priced.
    pub price_micros: Option<u64>,
}

/// The plugin's routes. Paths use `{param}` segments and an optional trailing
/// `{*rest}`; the host does the matching and hands over the parameters.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    pub fn route(mut self, method: Method, path: &'static str, handler: Handler) -> Self {
        let id = format!("{} {path}", method_name(&method));
        self.routes.push(Route {
            method,
            path,
            id,
            handler,
            price_micros: None,
        });
        self
    }

    /// Prices the route declared last: `micros` (1,000,000 = $1) is held
    /// on the caller's account before each call and charged after it,
    /// unless the handler charges what it used ([`crate::billing::charge`]),
    /// then at most this. A caller who cannot afford it gets 402 and the
    /// handler is not called. The operator's `[[billing.prices]]` wins.
    ///
    /// ```ignore
    /// Router::new().post("/summaries", summarize).price(20_000)
    /// ```
    pub fn price(mut self, micros: u64) -> Self {
        if let Some(last) = self.routes.last_mut() {
            last.price_micros = Some(micros);
        }
        self
    }

    pub fn get(self, path: &'static str, handler: Handler) -> Self {
        self.route(Method::Get, path, handler)
    }
    pub fn post(self, path: &'static str, handler: Handler) -> Self {
        self.route(Method::Post, path, handler)
    }
    pub fn put(self, path: &'static str, handler: Handler) -> Self {
        self.route(Method::Put, path, handler)
    }
    pub fn patch(self, path: &'static str, handler: Handler) -> Self {
        self.route(Method::Patch, path, handler)
    }
    pub fn delete(self, path: &'static str, handler: Handler) -> Self {
        self.route(Method::Delete, path, handler)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub(crate) fn find(&self, id: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.id == id)
    }

    pub(crate) fn prices(&self) -> Vec<(String, u64)> {
        self.routes
            .iter()
            .filter_map(|r| r.price_micros.map(|p| (r.id.clone(), p)))
            .collect()
    }

    pub(crate) fn manifest_routes(&self) -> Vec<types::Route> {
        self.routes
            .iter()
            .map(|r| types::Route {
                method: r.method.clone(),
                path: r.path.to_string(),
                handler: r.id.clone(),
            })
            .collect()
    }
}

/// The method's name as it appears on the wire.
pub fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Other(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: Request) -> Result<Response> {
        Ok(Response::new(204))
    }

    #[test]
    fn handler_ids_name_method_and_path() {
        let r = Router::new().get("/a/{id}", ok).post("/a", ok);
        let ids: Vec<_> = r.manifest_routes().into_iter().map(|r| r.handler).collect();
        assert_eq!(ids, ["GET /a/{id}", "POST /a"]);
        assert!(r.find("POST /a").is_some());
        assert!(r.find("DELETE /a").is_none());
    }

    #[test]
    fn a_price_belongs_to_the_route_declared_before_it() {
        let r = Router::new()
            .get("/a", ok)
            .post("/a", ok)
            .price(500)
            .get("/b", ok);
        assert_eq!(r.prices(), [("POST /a".to_string(), 500)]);
        assert_eq!(Router::new().price(1).prices(), []);
    }
}
