//! A plugin's manifest, checked. Everything here is a pure function over what
//! the guest returned from `describe()`: the guest is untrusted, so every
//! field is validated and every refusal says which field and why.

use axum::http::Method;

/// Paths the host keeps for itself; a plugin route under one is refused.
pub const RESERVED_PREFIXES: &[&str] = &["/_kiln", "/graphql", "/mcp"];

const MAX_NAME: usize = 64;
const MAX_VERSION: usize = 64;
const MAX_DESCRIPTION: usize = 1024;
const MAX_ROUTES: usize = 512;
const MAX_PATH: usize = 1024;
const MAX_HANDLER: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub routes: Vec<RouteDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecl {
    pub method: Method,
    pub path: RoutePath,
    pub handler: String,
}

/// A route path that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    Param(String),
    /// `{*name}`: the rest of the path.
    Rest(String),
}

impl RoutePath {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Parameter names in order.
    pub fn param_names(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) | Segment::Rest(n) => Some(n.clone()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// The path with parameter names erased: two routes with the same shape
    /// match exactly the same requests.
    pub fn shape(&self) -> String {
        if self.segments.is_empty() {
            return "/".into();
        }
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => out.push_str("{}"),
                Segment::Rest(_) => out.push_str("{*}"),
            }
        }
        out
    }

    pub fn parse(path: &str) -> Result<RoutePath, String> {
        if path.len() > MAX_PATH {
            return Err(format!("path is longer than {MAX_PATH} bytes"));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("path {path:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                segments.push(parse_segment(path, part, last)?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &segments {
            if let Segment::Param(n) | Segment::Rest(n) = s
                && !seen.insert(n.as_str())
            {
                return Err(format!("path {path:?} uses parameter {{{n}}} twice"));
            }
        }
        if let Some(prefix) = reserved_prefix(&segments) {
            return Err(format!(
                "path {path:?} is under {prefix}, which the engine reserves for itself"
            ));
        }
        Ok(RoutePath {
            text: path.to_string(),
            segments,
        })
    }
}

fn parse_segment(path: &str, part: &str, last: bool) -> Result<Segment, String> {
    if part.is_empty() {
        return Err(format!(
            "path {path:?} has an empty segment ('//' or a trailing '/')"
        ));
    }
    if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        let (rest, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        if !is_identifier(name) {
            return Err(format!(
                "path {path:?}: parameter {part:?} needs a name of letters, digits and '_' \
                 (not starting with a digit)"
            ));
        }
        if rest && !last {
            return Err(format!(
                "path {path:?}: the wildcard {part:?} must be the last segment"
            ));
        }
        return Ok(if rest {
            Segment::Rest(name.into())
        } else {
            Segment::Param(name.into())
        });
    }
    if let Some(c) = part.chars().find(|c| !is_literal_char(*c)) {
        return Err(format!(
            "path {path:?}: segment {part:?} contains {c:?}; a segment is either literal \
             text or a whole {{param}}"
        ));
    }
    // Requests are routed in canonical form (`crate::path`): a literal that
    // is not would never be reached.
    match crate::path::canonical_segment(part) {
        Ok(c) if c == part && part != "." && part != ".." => {}
        Ok(c) if part != "." && part != ".." => {
            return Err(format!(
                "path {path:?}: segment {part:?} is never sent that way; write {c:?}"
            ));
        }
        Ok(_) => {
            return Err(format!(
                "path {path:?}: segment {part:?} is removed from every request path"
            ));
        }
        Err(e) => return Err(format!("path {path:?}: segment {part:?}: {e}")),
    }
    Ok(Segment::Literal(part.into()))
}

fn reserved_prefix(segments: &[Segment]) -> Option<&'static str> {
    let Some(Segment::Literal(first)) = segments.first() else {
        return None;
    };
    RESERVED_PREFIXES.iter().copied().find(|p| &p[1..] == first)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 3986 `pchar` minus the characters the router gives meaning to.
fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@%".contains(c)
}

fn is_plugin_name(s: &str) -> bool {
    let mut chars = s.chars();
    !s.is_empty()
        && s.len() <= MAX_NAME
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The method as the guest declared it: a name from the WIT variant.
pub fn parse_method(name: &str) -> Result<Method, String> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "method {name:?} must be an upper-case HTTP token such as PROPFIND"
        ));
    }
    Method::from_bytes(name.as_bytes()).map_err(|e| format!("method {name:?}: {e}"))
}

/// A manifest as the guest sent it, before checking.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// (method name, path, handler)
    pub routes: Vec<(String, String, String)>,
}

impl RawManifest {
    /// Checks every field; the error names the first offending one.
    pub fn validate(self) -> Result<Manifest, String> {
        if !is_plugin_name(&self.name) {
            return Err(format!(
                "name {:?} must be 1-{MAX_NAME} characters of a-z, 0-9, '-' and '_', \
                 starting with a letter or digit",
                truncate(&self.name)
            ));
        }
        if self.version.is_empty()
            || self.version.len() > MAX_VERSION
            || self
                .version
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "version {:?} must be 1-{MAX_VERSION} visible characters",
                truncate(&self.version)
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION)
        {
            return Err(format!(
                "description is longer than {MAX_DESCRIPTION} bytes"
            ));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(format!(
                "declares {} routes; at most {MAX_ROUTES}",
                self.routes.len()
            ));
        }
        let mut routes: Vec<RouteDecl> = Vec::with_capacity(self.routes.len());
        for (method, path, handler) in self.routes {
            let method = parse_method(&method)?;
            let path = RoutePath::parse(&path)?;
            if handler.is_empty() || handler.len() > MAX_HANDLER {
                return Err(format!(
                    "route {method} {}: handler must be 1-{MAX_HANDLER} bytes",
                    path.as_str()
                ));
            }
            if let Some(dup) = routes
                .iter()
                .find(|r| r.method == method && r.path.shape() == path.shape())
            {
                return Err(format!(
                    "route {method} {} is declared twice (also as {method} {})",
                    path.as_str(),
                    dup.path.as_str()
                ));
            }
            routes.push(RouteDecl {
                method,
                path,
                handler,
            });
        }
        Ok(Manifest {
            name: self.name,
            version: self.version,
            description: self.description,
            routes,
        })
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_segments() {
        let ok: &[(&str, &str, &[&str])] = &[
            ("/", "/", &[]),
            ("/hello", "/hello", &[]),
            ("/hello/{name}", "/hello/{}", &["name"]),
            ("/a/{x}/b/{y_2}", "/a/{}/b/{}", &["x", "y_2"]),
            ("/files/{*path}", "/files/{*}", &["path"]),
            ("/v1/users:search", "/v1/users:search", &[]),
            ("/a%20b/%C3%B6", "/a%20b/%C3%B6", &[]),
        ];
        for (path, shape, params) in ok {
            let p = RoutePath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(p.shape(), *shape, "{path}");
            assert_eq!(p.param_names(), *params, "{path}");
        }
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        let bad: &[(&str, &str)] = &[
            ("hello", "must start with '/'"),
            ("/a//b", "empty segment"),
            ("/a/", "empty segment"),
            ("/a/{}", "needs a name"),
            ("/a/{1x}", "needs a name"),
            ("/a/{x-y}", "needs a name"),
            ("/a/{*rest}/b", "must be the last segment"),
            ("/a/x{y}", "contains '{'"),
            ("/a/b c", "contains ' '"),
            ("/a/{x}/{x}", "twice"),
            ("/a?b", "contains '?'"),
            // Requests are routed in canonical form (crate::path).
            ("/%7Euser", "write \"~user\""),
            ("/a%c3%b6", "write \"a%C3%B6\""),
            ("/a/./b", "removed from every request path"),
            ("/a/..", "removed from every request path"),
            ("/a%zz", "two hex digits"),
            ("/a%2Fb", "escaped '/'"),
            ("/_kiln/v1/plugins", "reserves"),
            ("/_kiln", "reserves"),
            ("/graphql", "reserves"),
            ("/mcp/{x}", "reserves"),
        ];
        for (path, why) in bad {
            let err = RoutePath::parse(path).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        assert!(RoutePath::parse(&format!("/{}", "a".repeat(2000))).is_err());
        // Only the whole first segment is reserved.
        assert!(RoutePath::parse("/graphqlish").is_ok());
        assert!(RoutePath::parse("/api/mcp").is_ok());
    }

    fn raw(name: &str, routes: &[(&str, &str)]) -> RawManifest {
        RawManifest {
            name: name.into(),
            version: "1.0.0".into(),
            description: None,
            routes: routes
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string(), format!("{m} {p}")))
                .collect(),
        }
    }

    #[test]
    fn manifests_validate_names_methods_and_duplicates() {
        let m = raw("hello-rust", &[("GET", "/hello/{name}"), ("POST", "/echo")])
            .validate()
            .unwrap();
        assert_eq!(m.routes.len(), 2);
        assert_eq!(m.routes[0].method, Method::GET);

        for name in ["", "Hello", "-x", "a b", &"x".repeat(65)] {
            assert!(
                raw(name, &[]).validate().unwrap_err().contains("name"),
                "{name:?}"
            );
        }
        let err = raw("p", &[("get", "/x")]).validate().unwrap_err();
        assert!(err.contains("upper-case"), "{err}");
        assert!(raw("p", &[("PROPFIND", "/x")]).validate().is_ok());
        let err = raw("p", &[("GET", "/a/{x}"), ("GET", "/a/{y}")])
            .validate()
            .unwrap_err();
        assert!(err.contains("declared twice"), "{err}");
        assert!(
            raw("p", &[("GET", "/a/{x}"), ("POST", "/a/{y}")])
                .validate()
                .is_ok()
        );

        let mut m = raw("p", &[]);
        m.version = "1 0".into();
        assert!(m.validate().unwrap_err().contains("version"));
        let mut m = raw("p", &[("GET", "/x")]);
        m.routes[0].2.clear();
        assert!(m.validate().unwrap_err().contains("handler"));
    }
}
