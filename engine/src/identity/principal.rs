//! Who is calling: the one shape every authentication method produces and
//! every plugin call receives (as JSON in its context).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthMethod {
    /// A JSON Web Token from the configured issuer.
    Jwt { issuer: Option<String> },
    /// An API key, by its public id (never the secret).
    ApiKey { key_id: String },
    /// A plugin auth provider, by its name.
    Provider { name: String },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// Stable id of the caller: the token's `sub`, the key's name, or what
    /// the provider said.
    pub subject: String,
    pub roles: BTreeSet<String>,
    /// The remaining claims (a JWT's payload, a provider's extra fields),
    /// for plugins that need more than subject and roles.
    pub claims: Map<String, Value>,
    pub method: AuthMethod,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether the principal holds at least one of `roles` (none: anyone).
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        roles.is_empty() || roles.iter().any(|r| self.has_role(r))
    }

    /// The JSON plugins receive in their call context.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Who is calling one request: none for an anonymous caller. Put in the
/// request's extensions by the HTTP auth layer and read by every surface.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<std::sync::Arc<Principal>>);

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_deref()
    }

    /// The principal as the JSON plugins receive.
    pub fn json(&self) -> Option<Value> {
        self.0.as_ref().map(|p| p.to_json())
    }

    /// Who a plugin call is made for: the subject (for observers) and the
    /// JSON the plugin reads.
    pub fn for_plugin(&self) -> Option<crate::runtime::CallerRef> {
        self.0.as_ref().map(|p| crate::runtime::CallerRef {
            subject: p.subject.clone(),
            json: p.to_json().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_json() {
        let p = Principal {
            subject: "ada".into(),
            roles: ["reader".to_string()].into(),
            claims: Map::new(),
            method: AuthMethod::ApiKey {
                key_id: "k_1".into(),
            },
        };
        assert!(p.has_any_role(&[]));
        assert!(p.has_any_role(&["admin".into(), "reader".into()]));
        assert!(!p.has_any_role(&["admin".into()]));
        let json = p.to_json();
        assert_eq!(json["subject"], "ada");
        assert_eq!(json["roles"], serde_json::json!(["reader"]));
        assert_eq!(
            json["method"],
            serde_json::json!({ "kind": "api_key", "key_id": "k_1" })
        );
    }
}
