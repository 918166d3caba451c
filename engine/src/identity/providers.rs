//! Plugin auth providers: plugins that export `kiln:plugin/auth-provider`
//! and that the operator names in `[identity] providers` ("plugin/provider",
//! tried in that order). Every failure closes: a provider that is not
//! loaded answers 503, one that traps, times out or returns something
//! malformed 401 — never an anonymous pass.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri};

use super::access::valid_role;
use super::authenticator::AuthFailed;
use super::principal::{AuthMethod, Principal};
use crate::front_door::{FrontDoor, refused};
use crate::registry::Registry;
use crate::registry::Snapshot;
use crate::runtime::bindings::{auth_provider, types};
use crate::runtime::call::AUTH_PROVIDER;
use crate::runtime::{CallError, CallResult, CallSpec, LoadError, Plugin};
use futures_util::future::BoxFuture;

/// One configured provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRef {
    pub plugin: String,
    pub provider: String,
}

impl ProviderRef {
    /// `plugin/provider`.
    pub fn parse(text: &str) -> Result<ProviderRef, String> {
        let (plugin, provider) = text
            .split_once('/')
            .filter(|(p, n)| !p.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("{text:?} must be \"plugin/provider\""))?;
        Ok(ProviderRef {
            plugin: plugin.to_string(),
            provider: provider.to_string(),
        })
    }

    fn name(&self) -> String {
        format!("{}/{}", self.plugin, self.provider)
    }
}

/// Most roles a provider may grant one caller.
const MAX_ROLES: usize = 32;
const MAX_SUBJECT: usize = 256;

pub struct PluginProviders {
    registry: Arc<Registry>,
    order: Vec<ProviderRef>,
}

impl PluginProviders {
    pub fn new(registry: Arc<Registry>, order: Vec<ProviderRef>) -> Self {
        PluginProviders { registry, order }
    }

    /// Asks each provider in turn; the first that knows the caller wins.
    pub async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        request_id: Arc<str>,
    ) -> Result<Option<Principal>, AuthFailed> {
        if self.order.is_empty() {
            return Ok(None);
        }
        let head = auth_provider::RequestHead {
            method: types::Method::from_http(method),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            // A header that is not UTF-8 cannot be a credential a provider
            // reads; leave it out rather than refuse the request here.
            headers: headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect(),
        };
        let snapshot = self.registry.snapshot();
        for wanted in &self.order {
            let name = wanted.name();
            let Some(plugin) = snapshot.plugins.values().find(|p| {
                p.manifest.name == wanted.plugin
                    && provider_names(p).is_some_and(|n| n.0.contains(&wanted.provider))
            }) else {
                return Err(AuthFailed {
                    reason: format!(
                        "the auth provider '{name}' is not loaded; requests cannot be authenticated"
                    ),
                    unavailable: true,
                });
            };
            let outcome = authenticate(plugin, &wanted.provider, &head, request_id.clone()).await;
            match outcome {
                Ok(Ok(Some(verified))) => return principal(&name, verified).map(Some),
                Ok(Ok(None)) => continue,
                Ok(Err(types::Error { message, .. })) => {
                    return Err(AuthFailed {
                        reason: format!("{name}: {message}"),
                        unavailable: false,
                    });
                }
                Err(CallError::Busy(_)) => {
                    return Err(AuthFailed {
                        reason: format!("the auth provider '{name}' is busy; retry shortly"),
                        unavailable: true,
                    });
                }
                Err(e) => {
                    tracing::error!(provider = %name, request_id = %request_id, error = %e, "auth provider failed; request refused");
                    return Err(AuthFailed {
                        reason: format!(
                            "the auth provider '{name}' failed, so the request is refused; the \
                             engine log has the details under this request id"
                        ),
                        unavailable: false,
                    });
                }
            }
        }
        Ok(None)
    }
}

/// Auth providers as a front door: at load a plugin names the providers
/// it implements (`kiln:plugin/auth-provider.providers`); the operator
/// decides in `[identity] providers` which are used, so there is nothing
/// to admit and no catalog.
pub struct AuthDoor;

/// The auth providers a plugin implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderNames(pub Vec<String>);

/// Why a plugin's auth providers were refused at load.
#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    #[error("auth-provider.providers() failed: {0}")]
    Describe(CallError),
    #[error("invalid auth providers: {0}")]
    Invalid(String),
}

/// The providers `plugin` implements, when it exports any.
pub fn provider_names(plugin: &Plugin) -> Option<&ProviderNames> {
    plugin.parts.get::<ProviderNames>()
}

impl FrontDoor for AuthDoor {
    fn describe<'a>(&'a self, plugin: &'a mut Plugin) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let asked = plugin
                .ask(&AUTH_PROVIDER, async |auth, store, instance| {
                    let guest = auth.load(&mut *store, &instance)?;
                    guest.call_providers(store).await
                })
                .await;
            let Some(names) = asked else {
                return Ok(());
            };
            let names = names.map_err(|e| refused(AuthLoadError::Describe(e)))?;
            let names =
                check_provider_names(names).map_err(|e| refused(AuthLoadError::Invalid(e)))?;
            plugin.parts.insert(ProviderNames(names));
            Ok(())
        })
    }

    fn admit(&self, _: &mut Snapshot, _: &Arc<Plugin>) -> Result<(), String> {
        Ok(())
    }

    fn summary(&self, _: Option<&Plugin>) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
}

/// Asks provider `provider` of `plugin` who sent `head`.
async fn authenticate(
    plugin: &Plugin,
    provider: &str,
    head: &auth_provider::RequestHead,
    request_id: Arc<str>,
) -> CallResult<Option<auth_provider::Verified>> {
    let spec = CallSpec::new(request_id, provider);
    plugin
        .call(&AUTH_PROVIDER, spec, async |auth, store, instance| {
            let guest = auth.load(&mut *store, &instance)?;
            guest.call_authenticate(store, provider, head).await
        })
        .await
}

/// Checks what a provider vouched for: plugins are untrusted too.
fn principal(name: &str, v: auth_provider::Verified) -> Result<Principal, AuthFailed> {
    let refuse = |what: String| {
        tracing::error!(
            provider = name,
            "auth provider returned {what}; request refused"
        );
        AuthFailed {
            reason: format!("the auth provider '{name}' returned {what}"),
            unavailable: false,
        }
    };
    if v.subject.is_empty() || v.subject.len() > MAX_SUBJECT {
        return Err(refuse(format!(
            "a subject of {} bytes (1-{MAX_SUBJECT} allowed)",
            v.subject.len()
        )));
    }
    if v.roles.len() > MAX_ROLES {
        return Err(refuse(format!(
            "{} roles (at most {MAX_ROLES})",
            v.roles.len()
        )));
    }
    if let Some(bad) = v.roles.iter().find(|r| !valid_role(r)) {
        return Err(refuse(format!("an invalid role {bad:?}")));
    }
    let claims = match v.claims {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(refuse("claims that are not a JSON object".into())),
        },
    };
    Ok(Principal {
        subject: v.subject,
        roles: v.roles.into_iter().collect(),
        claims,
        method: AuthMethod::Provider {
            name: name.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_refs_parse() {
        assert_eq!(
            ProviderRef::parse("wallet/signed-header").unwrap(),
            ProviderRef {
                plugin: "wallet".into(),
                provider: "signed-header".into()
            }
        );
        for bad in ["wallet", "/x", "x/", "a/b/c"] {
            assert!(ProviderRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_a_provider_returns_is_checked() {
        let ok = auth_provider::Verified {
            subject: "ada".into(),
            roles: vec!["member".into()],
            claims: Some(r#"{"wallet":"0xabc"}"#.into()),
        };
        let p = principal("w/s", ok).unwrap();
        assert_eq!(p.claims["wallet"], "0xabc");
        assert_eq!(p.method, AuthMethod::Provider { name: "w/s".into() });
        for bad in [
            auth_provider::Verified {
                subject: String::new(),
                roles: vec![],
                claims: None,
            },
            auth_provider::Verified {
                subject: "a".into(),
                roles: vec!["no spaces".into()],
                claims: None,
            },
            auth_provider::Verified {
                subject: "a".into(),
                roles: vec![],
                claims: Some("[1]".into()),
            },
        ] {
            assert!(principal("w/s", bad).is_err());
        }
    }
}

/// Provider names: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes, unique.
fn check_provider_names(names: Vec<String>) -> Result<Vec<String>, String> {
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "provider name {name:?} must match [a-z0-9][a-z0-9_-]* (at most 64 bytes)"
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("provider '{name}' is declared twice"));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod provider_name_tests {
    #[test]
    fn provider_names_are_checked() {
        let ok = super::check_provider_names(vec!["demo".into(), "signed-header_2".into()]);
        assert_eq!(ok.unwrap().len(), 2);
        for bad in [
            vec!["Demo".to_string()],
            vec!["-x".into()],
            vec!["a".into(), "a".into()],
            vec!["".into()],
        ] {
            assert!(super::check_provider_names(bad).is_err());
        }
    }
}
