//! Auth providers: the plugin vouches for callers the engine cannot
//! authenticate itself (a signed header, another system's session). The
//! operator enables a provider by naming it in the engine config:
//! `[identity] providers = ["my-plugin/signed-header"]`.
//!
//! ```ignore
//! use kiln_sdk::auth::{Providers, Verified};
//!
//! fn auth() -> Providers {
//!     Providers::new().provider("signed-header", signed_header)
//! }
//!
//! fn signed_header(req: &Request) -> Result<Option<Verified>> {
//!     let Some(user) = req.header("x-user") else { return Ok(None) };   // not ours: next provider
//!     if !signature_ok(req, user) { return Err(Error::unauthorized("bad signature")) }
//!     Ok(Some(Verified::new(user).roles(&["member"])))
//! }
//! ```

use serde_json::Value;

use crate::bindings::exports::kiln::plugin::auth_provider as wit;
use crate::{Request, Result};

/// One provider: looks at a request (no body) and says who sent it,
/// `Ok(None)` when the request is not its kind, or an error when it is but
/// the credential is wrong.
pub type ProviderFn = fn(&Request) -> Result<Option<Verified>>;

/// The plugin's providers by name.
#[derive(Default)]
pub struct Providers {
    providers: Vec<(String, ProviderFn)>,
}

impl Providers {
    pub fn new() -> Self {
        Providers::default()
    }

    /// No providers (the default for a plugin).
    pub fn none() -> Self {
        Providers::default()
    }

    /// Adds provider `name` (`[a-z0-9][a-z0-9_-]*`).
    pub fn provider(mut self, name: &str, run: ProviderFn) -> Self {
        self.providers.push((name.to_string(), run));
        self
    }

    fn find(&self, name: &str) -> Option<ProviderFn> {
        self.providers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f)
    }
}

/// Who a provider vouches for.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub subject: String,
    pub roles: Vec<String>,
    /// A JSON object of extra claims, or null.
    pub claims: Value,
}

impl Verified {
    pub fn new(subject: impl Into<String>) -> Self {
        Verified {
            subject: subject.into(),
            roles: Vec::new(),
            claims: Value::Null,
        }
    }

    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Extra claims: a JSON object.
    pub fn claims(mut self, claims: Value) -> Self {
        self.claims = claims;
        self
    }
}

#[doc(hidden)]
pub mod __export {
    use super::*;
    use crate::Plugin;
    use crate::bindings::kiln::plugin::types;

    pub fn providers<P: Plugin>() -> Vec<String> {
        P::auth().providers.into_iter().map(|(n, _)| n).collect()
    }

    pub fn authenticate<P: Plugin>(
        provider: String,
        head: wit::RequestHead,
    ) -> std::result::Result<Option<wit::Verified>, types::Error> {
        let Some(run) = P::auth().find(&provider) else {
            return Err(crate::Error::not_found(format!(
                "this plugin has no auth provider named '{provider}'"
            ))
            .into());
        };
        let request = Request {
            method: head.method,
            path: head.path,
            query: head.query,
            params: Vec::new(),
            headers: head.headers,
            body: Vec::new(),
        };
        match run(&request) {
            Ok(Some(v)) => Ok(Some(wit::Verified {
                subject: v.subject,
                roles: v.roles,
                claims: (!v.claims.is_null()).then(|| v.claims.to_string()),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
