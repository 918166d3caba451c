//! Who the current call is for. The host has already authenticated the
//! caller and checked the engine's access rules before the plugin runs; use
//! this to decide what to show or allow on top of them (a user's own notes,
//! an owner-only edit).
//!
//! ```ignore
//! use kiln_sdk::identity;
//! match identity::caller() {
//!     Some(who) if who.has_role("editor") => { /* ... */ }
//!     Some(who) => { /* signed in as who.subject */ }
//!     None => { /* anonymous (the route is public) */ }
//! }
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bindings::kiln::plugin::identity as wit;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Principal {
    /// The token's `sub`, the API key's name, or what a provider said.
    pub subject: String,
    pub roles: Vec<String>,
    /// The token's other claims (empty for API keys).
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// How the caller proved who it is: `{"kind": "jwt", "issuer": ...}`,
    /// `{"kind": "api_key", "key_id": ...}` or `{"kind": "provider", "name": ...}`.
    pub method: Value,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `jwt`, `api_key` or `provider`.
    pub fn method_kind(&self) -> &str {
        self.method
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// The caller of the current call; `None` when it is anonymous.
pub fn caller() -> Option<Principal> {
    // The host always sends the shape above; anything else reads as no caller
    // rather than trapping the plugin.
    wit::caller().and_then(|json| serde_json::from_str(&json).ok())
}

/// The caller as the host sent it (JSON), for plugins that want all of it.
pub fn caller_json() -> Option<String> {
    wit::caller()
}
