//! `[identity]` in the engine config: which credentials the engine accepts.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Accept API keys (`kk_...`, from `kiln keys create`) as bearer tokens
    /// or in `X-Api-Key`.
    pub api_keys: bool,
    /// Accept JSON Web Tokens from one issuer.
    pub jwt: Option<JwtConfig>,
    /// Plugin auth providers ("plugin/provider"), asked in this order about
    /// requests without an API key or JWT.
    pub providers: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            api_keys: true,
            jwt: None,
            providers: Vec::new(),
        }
    }
}

impl crate::config::Section for IdentityConfig {
    const KEY: &'static str = "identity";

    fn apply_env(&mut self, env: crate::config::Env<'_>) -> Result<(), crate::config::ConfigError> {
        if let Some(v) = env("KILN_JWT_SECRET") {
            self.jwt.get_or_insert_with(Default::default).secret = Some(Secret::new(v));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        if let Some(jwt) = &self.jwt {
            jwt.validate()
                .map_err(|m| crate::config::invalid("identity.jwt", &m))?;
        }
        Ok(())
    }
}

/// `[identity.jwt]`: exactly one of `secret`, `public_key_file`, `jwks_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required in `aud`.
    pub audience: Option<String>,
    /// HMAC secret for HS256/384/512 (at least 32 bytes); prefer the
    /// `KILN_JWT_SECRET` environment variable.
    pub secret: Option<Secret>,
    /// PEM public key (RSA, EC P-256/P-384 or Ed25519).
    pub public_key_file: Option<PathBuf>,
    /// A JWKS document (`https://issuer/.well-known/jwks.json`).
    pub jwks_url: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_s: u64,
    /// The claim that holds roles (a list of strings, or a space-separated string).
    pub roles_claim: String,
    /// Narrows the accepted algorithms (e.g. `["RS256"]`) within the key's family.
    pub algorithms: Option<Vec<String>>,
    /// How long fetched JWKS keys are used before they are fetched again.
    pub jwks_cache_ms: u64,
    /// A token with an unknown `kid` refetches the JWKS at most this often.
    pub jwks_min_refresh_ms: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuer: None,
            audience: None,
            secret: None,
            public_key_file: None,
            jwks_url: None,
            leeway_s: 30,
            roles_claim: "roles".into(),
            algorithms: None,
            jwks_cache_ms: 3_600_000,
            jwks_min_refresh_ms: 10_000,
        }
    }
}

impl JwtConfig {
    pub fn validate(&self) -> Result<(), String> {
        let sources = [
            self.secret.is_some(),
            self.public_key_file.is_some(),
            self.jwks_url.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if sources != 1 {
            return Err(
                "name exactly one of secret (or KILN_JWT_SECRET), public_key_file, jwks_url".into(),
            );
        }
        if self.leeway_s > 300 {
            return Err("leeway_s must be at most 300 seconds".into());
        }
        if self.roles_claim.is_empty() {
            return Err("roles_claim must not be empty".into());
        }
        if let Some(url) = &self.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!("jwks_url {url:?} must be an http(s) URL"));
        }
        if self.jwks_min_refresh_ms == 0 || self.jwks_cache_ms == 0 {
            return Err("jwks_cache_ms and jwks_min_refresh_ms must be greater than 0".into());
        }
        Ok(())
    }
}
