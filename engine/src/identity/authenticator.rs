//! From a request's headers to a principal: the one place that reads
//! credentials. `Authorization: Bearer kk_...` and `X-Api-Key: kk_...` are
//! API keys; any other bearer token is a JWT. No credential at all is an
//! anonymous caller (access rules decide whether that is enough); a
//! credential that does not check out is refused, never ignored.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use jsonwebtoken::Algorithm;

use super::api_keys::{ApiKeys, KeyRejected};
use super::config::{IdentityConfig, JwtConfig};
use super::jwks::JwksVerifier;
use super::jwt::{JwtRules, JwtVerifier, KeySource};
use super::principal::Principal;
use super::providers::{PluginProviders, ProviderRef};
use crate::registry::Registry;

/// A presented credential that does not check out: 401, with this reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct AuthFailed {
    pub reason: String,
    /// The credential could not be checked right now (the key store is
    /// down): the client may retry.
    pub unavailable: bool,
}

impl AuthFailed {
    fn new(reason: impl Into<String>) -> Self {
        AuthFailed {
            reason: reason.into(),
            unavailable: false,
        }
    }
}

enum Jwt {
    Static(JwtVerifier),
    Jwks(JwksVerifier),
}

pub struct Authenticator {
    keys: ApiKeys,
    api_keys: bool,
    jwt: Option<Jwt>,
    /// Plugin auth providers, in the configured order; none configured: none.
    providers: Option<PluginProviders>,
}

static X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

impl Authenticator {
    /// Reads key files; the error names what is wrong.
    pub fn new(
        config: &IdentityConfig,
        keys: ApiKeys,
        registry: Arc<Registry>,
    ) -> Result<Authenticator, String> {
        let order = config
            .providers
            .iter()
            .map(|p| ProviderRef::parse(p).map_err(|e| format!("identity.providers: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let providers = (!order.is_empty()).then(|| PluginProviders::new(registry, order));
        let jwt = match &config.jwt {
            Some(jwt) => Some(jwt_verifier(jwt).map_err(|e| format!("identity.jwt: {e}"))?),
            None => None,
        };
        Ok(Authenticator {
            keys,
            api_keys: config.api_keys,
            jwt,
            providers,
        })
    }

    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// The caller of a request: none when it carries no credential.
    ///
    /// An API key is checked as one, and a bearer token as a JWT when an
    /// issuer is configured. Anything else — no credential, another
    /// Authorization scheme, a bearer token without a JWT issuer — goes to
    /// the plugin providers in order; when none knows the caller, a request
    /// without a credential is anonymous and one with a credential is
    /// refused.
    pub async fn authenticate(
        &self,
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        request_id: Arc<str>,
    ) -> Result<Option<Principal>, AuthFailed> {
        let unclaimed = match credential(headers)? {
            Credential::ApiKey(key) => return self.authenticate_token(key).await.map(Some),
            Credential::Bearer(token) if self.jwt.is_some() => {
                return self.authenticate_token(token).await.map(Some);
            }
            Credential::Bearer(_) => Some(AuthFailed::new(
                "the bearer token is not an API key and no JWT issuer is configured",
            )),
            Credential::Other(why) => Some(why),
            Credential::None => None,
        };
        if let Some(providers) = &self.providers
            && let Some(principal) = providers
                .authenticate(method, uri, headers, request_id)
                .await?
        {
            return Ok(Some(principal));
        }
        match unclaimed {
            Some(refusal) => Err(refusal),
            None => Ok(None),
        }
    }

    /// The principal a bearer token (API key or JWT) stands for.
    pub async fn authenticate_token(&self, token: &str) -> Result<Principal, AuthFailed> {
        if token.starts_with(super::api_keys::PREFIX) {
            if !self.api_keys {
                return Err(AuthFailed::new(
                    "API keys are not accepted here (identity.api_keys = false)",
                ));
            }
            return self.keys.verify(token).await.map_err(|e| AuthFailed {
                unavailable: matches!(e, KeyRejected::Unavailable),
                reason: e.to_string(),
            });
        }
        match &self.jwt {
            Some(Jwt::Static(v)) => v.verify(token),
            Some(Jwt::Jwks(v)) => v.verify(token).await,
            None => {
                return Err(AuthFailed::new(
                    "the bearer token is not an API key and no JWT issuer is configured",
                ));
            }
        }
        .map_err(|e| AuthFailed::new(e.0))
    }
}

/// What a request carries in `Authorization` / `X-Api-Key`.
enum Credential<'a> {
    None,
    ApiKey(&'a str),
    Bearer(&'a str),
    /// Something the host does not check itself (another scheme): a plugin
    /// provider may; if none does, this is why the request is refused.
    Other(AuthFailed),
}

fn credential(headers: &HeaderMap) -> Result<Credential<'_>, AuthFailed> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let mut api_key = headers.get_all(&X_API_KEY).iter();
    let (first_auth, second_auth) = (authorization.next(), authorization.next());
    let (first_key, second_key) = (api_key.next(), api_key.next());
    if second_auth.is_some() || second_key.is_some() {
        return Err(AuthFailed::new(
            "send one credential: the request has several Authorization or X-Api-Key headers",
        ));
    }
    match (first_auth, first_key) {
        (Some(_), Some(_)) => Err(AuthFailed::new(
            "send one credential: the request has both Authorization and X-Api-Key",
        )),
        (None, None) => Ok(Credential::None),
        (Some(value), None) => {
            let value = value
                .to_str()
                .map_err(|_| AuthFailed::new("the Authorization header is not ASCII"))?;
            match bearer(value) {
                Ok(token) if token.starts_with(super::api_keys::PREFIX) => {
                    Ok(Credential::ApiKey(token))
                }
                Ok(token) => Ok(Credential::Bearer(token)),
                Err(e) => Ok(Credential::Other(e)),
            }
        }
        (None, Some(value)) => {
            let key = value
                .to_str()
                .map_err(|_| AuthFailed::new("the X-Api-Key header is not ASCII"))?;
            if !key.starts_with(super::api_keys::PREFIX) {
                return Err(AuthFailed::new("X-Api-Key takes an API key (kk_...)"));
            }
            Ok(Credential::ApiKey(key))
        }
    }
}

/// The token of `Bearer <token>`.
fn bearer(value: &str) -> Result<&str, AuthFailed> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailed::new(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthFailed::new("the bearer token is empty"));
    }
    Ok(token)
}

fn jwt_verifier(config: &JwtConfig) -> Result<Jwt, String> {
    config.validate()?;
    let algorithms = match &config.algorithms {
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    n.parse::<Algorithm>()
                        .map_err(|_| format!("unknown algorithm {n:?} in algorithms"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let rules = JwtRules {
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        leeway_s: config.leeway_s,
        roles_claim: config.roles_claim.clone(),
        algorithms,
    };
    if let Some(secret) = &config.secret {
        return JwtVerifier::new(KeySource::Secret(secret.expose().as_bytes()), rules)
            .map(Jwt::Static);
    }
    if let Some(path) = &config.public_key_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read public_key_file {}: {e}", path.display()))?;
        return JwtVerifier::new(KeySource::PublicKeyPem(&pem), rules)
            .map(Jwt::Static)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let url = config.jwks_url.clone().unwrap_or_default();
    JwksVerifier::new(
        url,
        rules,
        Duration::from_millis(config.jwks_cache_ms),
        Duration::from_millis(config.jwks_min_refresh_ms),
    )
    .map(Jwt::Jwks)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn only_bearer_tokens_are_read() {
        assert_eq!(bearer("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer("bearer  abc ").unwrap(), "abc");
        assert!(bearer("Basic YTpi").unwrap_err().reason.contains("Bearer"));
        assert!(bearer("Bearer").unwrap_err().reason.contains("empty"));
        assert!(bearer("Bearer ").unwrap_err().reason.contains("empty"));
    }
}
