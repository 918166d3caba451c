//! Tokens signed by an issuer that publishes its keys as a JWKS document.
//! Keys are fetched on first use, kept for `jwks_cache_ms`, and fetched
//! again early when a token names a key id (`kid`) the engine has not seen
//! (the issuer rotated its keys), but at most once per
//! `jwks_min_refresh_ms`, so a client cannot make the engine hammer the
//! issuer with made-up key ids.
//!
//! Each key accepts only the algorithms of its own type (and its `alg`,
//! when the JWKS names one): the JWKS cannot be used for algorithm
//! confusion any more than a configured public key can.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::jwt::{
    JwtRules, JwtVerifier, RSA_FAMILY, TokenRejected, refuse_critical, unreadable_header,
};
use super::principal::Principal;

/// The largest JWKS document the engine reads.
const MAX_DOCUMENT: usize = 1 << 20;

pub struct JwksVerifier {
    url: String,
    client: reqwest::Client,
    rules: JwtRules,
    cache_for: Duration,
    min_refresh: Duration,
    keys: RwLock<Keys>,
    /// One fetch at a time; callers that waited read what it fetched.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Arc<JwtVerifier>>,
    /// Keys without a `kid`, tried when the token names none.
    anonymous: Vec<Arc<JwtVerifier>>,
    fetched_at: Option<Instant>,
}

impl JwksVerifier {
    pub fn new(
        url: String,
        rules: JwtRules,
        cache_for: Duration,
        min_refresh: Duration,
    ) -> Result<JwksVerifier, String> {
        // reqwest is built without a default TLS provider; ring is the
        // process's. Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(JwksVerifier {
            url,
            client,
            rules,
            cache_for,
            min_refresh,
            keys: RwLock::new(Keys::default()),
            fetching: Mutex::new(()),
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, TokenRejected> {
        // Before any fetch: a made-up extension must not cost a JWKS request.
        refuse_critical(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| unreadable_header(token))?;
        let kid = header.kid.as_deref();
        let stale = {
            let keys = self.keys.read().await;
            keys.fetched_at
                .is_none_or(|at| at.elapsed() >= self.cache_for)
        };
        if stale {
            self.refresh(None).await;
        }
        if let Some(principal) = self.try_keys(kid, token).await {
            return principal;
        }
        // An unknown kid: the issuer may have rotated its keys.
        if kid.is_some()
            && self.refresh(Some(self.min_refresh)).await
            && let Some(principal) = self.try_keys(kid, token).await
        {
            return principal;
        }
        let keys = self.keys.read().await;
        Err(TokenRejected(if keys.fetched_at.is_none() {
            "the issuer's signing keys (JWKS) could not be fetched".into()
        } else if kid.is_some() {
            "the token's key id (kid) is not among the issuer's keys".into()
        } else {
            "the token names no key id (kid) and no key without one verifies it".into()
        }))
    }

    /// The outcome with the key(s) the token names; none when there is no
    /// such key.
    async fn try_keys(
        &self,
        kid: Option<&str>,
        token: &str,
    ) -> Option<Result<Principal, TokenRejected>> {
        let keys = self.keys.read().await;
        match kid {
            Some(kid) => keys.by_id.get(kid).map(|v| v.verify(token)),
            None => {
                let mut last = None;
                for verifier in &keys.anonymous {
                    match verifier.verify(token) {
                        Ok(p) => return Some(Ok(p)),
                        Err(e) => last = Some(Err(e)),
                    }
                }
                last
            }
        }
    }

    /// Fetches the key set unless it was fetched less than `unless_within`
    /// ago. Whether a fetch happened and succeeded.
    async fn refresh(&self, unless_within: Option<Duration>) -> bool {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let keys = self.keys.read().await;
            if let (Some(at), Some(window)) = (keys.fetched_at, unless_within)
                && at.elapsed() < window
            {
                return false;
            }
            // Someone else fetched while this caller waited for the lock.
            if unless_within.is_none()
                && keys
                    .fetched_at
                    .is_some_and(|at| at.elapsed() < self.cache_for)
            {
                return true;
            }
        }
        match self.fetch().await {
            Ok(fresh) => {
                tracing::info!(url = %self.url, keys = fresh.by_id.len() + fresh.anonymous.len(), "fetched JWKS");
                *self.keys.write().await = fresh;
                true
            }
            Err(e) => {
                tracing::error!(url = %self.url, error = %e, "fetching JWKS failed");
                // Keep the old keys, but do not retry before the window.
                let mut keys = self.keys.write().await;
                if keys.fetched_at.is_some() {
                    keys.fetched_at = Some(Instant::now());
                }
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT as u64)
        {
            return Err(format!("the document is larger than {MAX_DOCUMENT} bytes"));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_DOCUMENT {
            return Err(format!("the document is larger than {MAX_DOCUMENT} bytes"));
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("not a JWKS document: {e}"))?;
        Ok(self.keys_of(set))
    }

    fn keys_of(&self, set: JwkSet) -> Keys {
        let mut keys = Keys {
            fetched_at: Some(Instant::now()),
            ..Keys::default()
        };
        for jwk in set.keys {
            let kid = jwk.common.key_id.clone();
            match verifier_for(&jwk, &self.rules) {
                Ok(Some(v)) => match kid {
                    Some(kid) => {
                        keys.by_id.insert(kid, Arc::new(v));
                    }
                    None => keys.anonymous.push(Arc::new(v)),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(kid = ?kid, "JWKS key skipped: {e}"),
            }
        }
        keys
    }
}

/// A verifier for one signing key; none for keys meant for encryption.
fn verifier_for(jwk: &Jwk, rules: &JwtRules) -> Result<Option<JwtVerifier>, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_FAMILY,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("unsupported elliptic curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKeyPair(_) => return Err("unsupported OKP curve".into()),
        // A shared secret published in a JWKS is no secret.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted".into()),
        _ => return Err("unsupported key type".into()),
    };
    // The key's own `alg`, when present, narrows the family to one.
    let family: Vec<Algorithm> = match jwk.common.key_algorithm {
        Some(alg) => {
            let alg: Algorithm = alg
                .to_string()
                .parse()
                .map_err(|_| format!("alg {alg} cannot sign tokens"))?;
            if !family.contains(&alg) {
                return Err(format!("alg {alg:?} does not fit the key's type"));
            }
            vec![alg]
        }
        None => family.to_vec(),
    };
    let mut rules = rules.clone();
    if let Some(wanted) = &rules.algorithms {
        let allowed: Vec<Algorithm> = wanted
            .iter()
            .copied()
            .filter(|a| family.contains(a))
            .collect();
        if allowed.is_empty() {
            return Err("none of the configured algorithms fits this key".into());
        }
        rules.algorithms = Some(allowed);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    JwtVerifier::with_key(key, &family, rules).map(Some)
}
