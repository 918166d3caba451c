//! From a request's headers to a principal: the one place that reads
//! credentials. `Authorization: Bearer kk_...` and `X-Api-Key: kk_...` are
//! API keys; any other bearer token is a JWT. No credential at all is an
//! anonymous caller (access rules decide whether that is enough); a
//! credential that does not check out is refused, never ignored.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use jsonwebtoken::Algorithm;

use super::api_keys::{ApiKeys, KeyRejected};
use super::config::{IdentityConfig, JwtConfig};
use super::jwks::JwksVerifier;
use super::jwt::{JwtRules, JwtVerifier, KeySource};
use super::principal::Principal;

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
}

static X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

impl Authenticator {
    /// Reads key files; the error names what is wrong.
    pub fn new(config: &IdentityConfig, keys: ApiKeys) -> Result<Authenticator, String> {
        let jwt = match &config.jwt {
            Some(jwt) => Some(jwt_verifier(jwt).map_err(|e| format!("identity.jwt: {e}"))?),
            None => None,
        };
        Ok(Authenticator {
            keys,
            api_keys: config.api_keys,
            jwt,
        })
    }

    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// The caller of a request: none when it carries no credential.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Principal>, AuthFailed> {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let mut api_key = headers.get_all(&X_API_KEY).iter();
        let (first_auth, second_auth) = (authorization.next(), authorization.next());
        let (first_key, second_key) = (api_key.next(), api_key.next());
        if second_auth.is_some() || second_key.is_some() {
            return Err(AuthFailed::new(
                "send one credential: the request has several Authorization or X-Api-Key headers",
            ));
        }
        let token = match (first_auth, first_key) {
            (Some(_), Some(_)) => {
                return Err(AuthFailed::new(
                    "send one credential: the request has both Authorization and X-Api-Key",
                ));
            }
            (None, None) => return Ok(None),
            (Some(value), None) => {
                let value = value
                    .to_str()
                    .map_err(|_| AuthFailed::new("the Authorization header is not ASCII"))?;
                bearer(value)?
            }
            (None, Some(value)) => {
                let key = value
                    .to_str()
                    .map_err(|_| AuthFailed::new("the X-Api-Key header is not ASCII"))?;
                if !key.starts_with(super::api_keys::PREFIX) {
                    return Err(AuthFailed::new("X-Api-Key takes an API key (kk_...)"));
                }
                key
            }
        };
        self.authenticate_token(token).await.map(Some)
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
