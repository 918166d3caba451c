//! The table that maps a request's method and path to a plugin handler.
//!
//! Precedence, decided by shape and never by load order:
//! 1. a literal segment beats a `{param}`, which beats a `{*rest}` wildcard;
//! 2. the exact method wins; HEAD falls back to GET;
//! 3. a path that matches with no route for the method is a 405 listing the
//!    methods that exist (`Allow`), otherwise 404.
//!
//! Plugins are added one at a time and atomically: either every route of the
//! plugin goes in or none does, and a refusal names both plugins.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;

use crate::manifest::{Manifest, RoutePath};

/// What a route leads to.
#[derive(Debug)]
pub struct Target<P> {
    pub plugin: P,
    pub handler: Arc<str>,
    /// This route's own parameter names, in path order.
    pub param_names: Vec<String>,
    /// The route as the plugin wrote it.
    pub pattern: Arc<str>,
}

#[derive(Debug)]
struct PathEntry<P> {
    methods: Vec<(Method, Arc<Target<P>>, String)>, // (method, target, owner plugin name)
}

/// The result of looking a request up.
pub enum Lookup<'a, P> {
    Found {
        target: &'a Arc<Target<P>>,
        /// The method of the route that serves it: GET for a HEAD request
        /// served by a GET route. Access is decided for this method.
        method: &'a Method,
        params: Vec<(String, String)>,
    },
    MethodNotAllowed {
        allow: String,
    },
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "route {method} {path} of plugin '{plugin}' conflicts with {their_method} {their_path} \
     of plugin '{owner}'; rename one of the routes or unload '{owner}'"
)]
pub struct Conflict {
    pub plugin: String,
    pub method: String,
    pub path: String,
    pub owner: String,
    pub their_method: String,
    pub their_path: String,
}

pub struct RouteTable<P> {
    router: matchit::Router<usize>,
    /// Indexed by the value stored in `router`.
    entries: Vec<PathEntry<P>>,
    /// Path shape → index in `entries`.
    by_shape: BTreeMap<String, usize>,
    /// Pattern (as inserted into matchit) → owner and method, for messages.
    owners: BTreeMap<String, (String, String)>,
}

impl<P> Default for RouteTable<P> {
    fn default() -> Self {
        RouteTable {
            router: matchit::Router::new(),
            entries: Vec::new(),
            by_shape: BTreeMap::new(),
            owners: BTreeMap::new(),
        }
    }
}

/// matchit's syntax is ours, except that its patterns must be unique per
/// shape: insert each shape once, under the first route's names.
fn matchit_pattern(path: &RoutePath) -> String {
    path.as_str().to_string()
}

impl<P: Clone> RouteTable<P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every route of `manifest`, served by `plugin`, or none of them.
    pub fn add(&mut self, manifest: &Manifest, plugin: P) -> Result<(), Box<Conflict>> {
        // Check everything first so a refusal leaves the table untouched.
        let mut router = self.router.clone();
        let mut new_shapes: BTreeMap<String, usize> = BTreeMap::new();
        for route in &manifest.routes {
            let shape = route.path.shape();
            let conflict = |owner: &str, their_method: &str, their_path: &str| Conflict {
                plugin: manifest.name.clone(),
                method: route.method.to_string(),
                path: route.path.as_str().to_string(),
                owner: owner.to_string(),
                their_method: their_method.to_string(),
                their_path: their_path.to_string(),
            };
            if let Some(&i) = self.by_shape.get(&shape) {
                if let Some((m, t, owner)) = self.entries[i]
                    .methods
                    .iter()
                    .find(|(m, _, _)| *m == route.method)
                {
                    return Err(Box::new(conflict(owner, m.as_str(), &t.pattern)));
                }
                continue;
            }
            if new_shapes.contains_key(&shape) {
                continue;
            }
            let index = self.entries.len() + new_shapes.len();
            if let Err(e) = router.insert(matchit_pattern(&route.path), index) {
                let with = match &e {
                    matchit::InsertError::Conflict { with } => with.clone(),
                    other => other.to_string(),
                };
                let (owner, their_method) = self
                    .owners
                    .get(&with)
                    .cloned()
                    .unwrap_or_else(|| (manifest.name.clone(), String::from("a route")));
                return Err(Box::new(conflict(&owner, &their_method, &with)));
            }
            new_shapes.insert(shape, index);
        }

        // Commit.
        self.router = router;
        for (shape, index) in new_shapes {
            self.by_shape.insert(shape, index);
        }
        self.entries.resize_with(self.by_shape.len(), || PathEntry {
            methods: Vec::new(),
        });
        for route in &manifest.routes {
            let index = self.by_shape[&route.path.shape()];
            let target = Arc::new(Target {
                plugin: plugin.clone(),
                handler: Arc::from(route.handler.as_str()),
                param_names: route.path.param_names(),
                pattern: Arc::from(route.path.as_str()),
            });
            self.owners
                .entry(route.path.as_str().to_string())
                .or_insert_with(|| (manifest.name.clone(), route.method.to_string()));
            self.entries[index]
                .methods
                .push((route.method.clone(), target, manifest.name.clone()));
        }
        Ok(())
    }

    /// Finds the handler for `method` and `path` (raw, percent-encoded).
    /// Parameters come back percent-decoded, named as the matched route names them.
    pub fn lookup(&self, method: &Method, path: &str) -> Result<Lookup<'_, P>, InvalidParam> {
        let Ok(m) = self.router.at(path) else {
            return Ok(Lookup::NotFound);
        };
        let entry = &self.entries[*m.value];
        let found = entry
            .methods
            .iter()
            .find(|(mm, _, _)| mm == method)
            .or_else(|| {
                (*method == Method::HEAD)
                    .then(|| entry.methods.iter().find(|(mm, _, _)| *mm == Method::GET))
                    .flatten()
            });
        let Some((route_method, target, _)) = found else {
            return Ok(Lookup::MethodNotAllowed {
                allow: allow_header(entry),
            });
        };
        let mut params = Vec::with_capacity(target.param_names.len());
        for (name, (_, raw)) in target.param_names.iter().zip(m.params.iter()) {
            let value = percent_decode(raw).ok_or_else(|| InvalidParam(name.clone()))?;
            params.push((name.clone(), value));
        }
        Ok(Lookup::Found {
            target,
            method: route_method,
            params,
        })
    }

    /// Every route, for listings: (method, pattern, owner).
    pub fn routes(&self) -> impl Iterator<Item = (&Method, &str, &str)> {
        self.entries.iter().flat_map(|e| {
            e.methods
                .iter()
                .map(|(m, t, owner)| (m, &*t.pattern, owner.as_str()))
        })
    }
}

/// A path parameter that is not valid UTF-8 once percent-decoded.
#[derive(Debug, thiserror::Error)]
#[error("path parameter '{0}' is not valid UTF-8 once percent-decoded")]
pub struct InvalidParam(pub String);

fn allow_header<P>(entry: &PathEntry<P>) -> String {
    let mut methods: Vec<&str> = entry.methods.iter().map(|(m, _, _)| m.as_str()).collect();
    if methods.contains(&"GET") && !methods.contains(&"HEAD") {
        methods.push("HEAD");
    }
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
}

/// Decodes `%XX` escapes; `None` if the result is not UTF-8. Malformed
/// escapes are kept literally, as browsers do.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RawManifest;

    fn manifest(name: &str, routes: &[(&str, &str)]) -> Manifest {
        RawManifest {
            name: name.into(),
            version: "1".into(),
            description: None,
            routes: routes
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string(), format!("{name}:{m} {p}")))
                .collect(),
        }
        .validate()
        .unwrap()
    }

    fn table(plugins: &[(&str, &[(&str, &str)])]) -> RouteTable<&'static str> {
        let mut t = RouteTable::new();
        for (name, routes) in plugins {
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            t.add(&manifest(name, routes), name).unwrap();
        }
        t
    }

    /// (method, path) → expected handler, or "404", or "405 <allow>".
    fn check(t: &RouteTable<&'static str>, cases: &[(&str, &str, &str)]) {
        for (method, path, want) in cases {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let got = match t.lookup(&m, path).unwrap() {
                Lookup::Found { target, params, .. } => {
                    let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    if p.is_empty() {
                        target.handler.to_string()
                    } else {
                        format!("{} [{}]", target.handler, p.join(","))
                    }
                }
                Lookup::MethodNotAllowed { allow } => format!("405 {allow}"),
                Lookup::NotFound => "404".into(),
            };
            assert_eq!(&got, want, "{method} {path}");
        }
    }

    #[test]
    fn precedence_and_method_rules() {
        let t = table(&[
            (
                "a",
                &[
                    ("GET", "/users/{id}"),
                    ("GET", "/users/me"),
                    ("DELETE", "/users/{id}"),
                    ("GET", "/files/{*path}"),
                    ("POST", "/files/upload"),
                    ("GET", "/"),
                ],
            ),
            (
                "b",
                &[("PUT", "/users/{uid}"), ("HEAD", "/ping"), ("GET", "/ping")],
            ),
        ]);
        check(
            &t,
            &[
                ("GET", "/users/7", "a:GET /users/{id} [id=7]"),
                ("GET", "/users/me", "a:GET /users/me"),
                ("DELETE", "/users/7", "a:DELETE /users/{id} [id=7]"),
                // Another plugin's method on the same shape, under its own names.
                ("PUT", "/users/7", "b:PUT /users/{uid} [uid=7]"),
                ("HEAD", "/users/7", "a:GET /users/{id} [id=7]"),
                ("POST", "/users/7", "405 DELETE, GET, HEAD, PUT"),
                ("POST", "/users/me", "405 GET, HEAD"),
                (
                    "GET",
                    "/files/a/b.txt",
                    "a:GET /files/{*path} [path=a/b.txt]",
                ),
                ("GET", "/files/upload", "405 POST"),
                ("GET", "/files", "404"),
                ("GET", "/", "a:GET /"),
                ("GET", "/nope", "404"),
                ("GET", "/users/7/x", "404"),
                ("HEAD", "/ping", "b:HEAD /ping"),
                ("GET", "/hello%20x", "404"),
                ("GET", "/users/J%C3%B6rg", "a:GET /users/{id} [id=Jörg]"),
                ("GET", "/users/100%", "a:GET /users/{id} [id=100%]"),
            ],
        );
        assert!(t.lookup(&Method::GET, "/users/%FF").is_err());
    }

    #[test]
    fn same_route_in_two_plugins_names_both() {
        let mut t = table(&[("shop", &[("GET", "/orders/{id}"), ("POST", "/orders")])]);
        let err = t
            .add(
                &manifest("orders", &[("POST", "/other"), ("GET", "/orders/{order}")]),
                "orders",
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("GET /orders/{order} of plugin 'orders'"),
            "{msg}"
        );
        assert!(msg.contains("GET /orders/{id} of plugin 'shop'"), "{msg}");
        // Nothing of the refused plugin went in.
        check(&t, &[("POST", "/other", "404")]);
    }

    #[test]
    fn a_param_beside_a_wildcard_is_refused_naming_both() {
        let mut t = table(&[("a", &[("GET", "/x/{*rest}")])]);
        let err = t
            .add(&manifest("b", &[("GET", "/x/{id}")]), "b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("GET /x/{id} of plugin 'b'"), "{err}");
        assert!(err.contains("/x/{*rest} of plugin 'a'"), "{err}");
        // Distinct literal prefixes do not collide.
        t.add(&manifest("c", &[("GET", "/y/{id}")]), "c").unwrap();
        check(
            &t,
            &[
                ("GET", "/x/1/2", "a:GET /x/{*rest} [rest=1/2]"),
                ("GET", "/y/1", "c:GET /y/{id} [id=1]"),
            ],
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("a%zz").as_deref(), Some("a%zz"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("%C3"), None);
    }
}
