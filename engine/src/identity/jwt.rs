//! Verifying JSON Web Tokens from one configured issuer. The key decides
//! the algorithm family: an HMAC secret accepts only HS256/384/512, an RSA
//! public key only RS*/PS*, an EC key only ES256/384, an Ed25519 key only
//! EdDSA. A token naming any other algorithm — `none`, or HS256 "signed"
//! with the RSA public key (algorithm confusion) — is refused before its
//! signature is looked at.

use std::collections::BTreeSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::principal::{AuthMethod, Principal};

/// HMAC secrets shorter than this are refused: they can be brute-forced
/// from a single token.
const MIN_SECRET: usize = 32;

/// Where the verification key comes from.
pub enum KeySource<'a> {
    /// A shared secret (HS256/384/512).
    Secret(&'a [u8]),
    /// A PEM public key: RSA, EC (P-256/P-384) or Ed25519.
    PublicKeyPem(&'a [u8]),
}

/// What is checked besides the signature.
#[derive(Debug, Clone)]
pub struct JwtRules {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required in `aud`, when set.
    pub audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_s: u64,
    /// The claim holding the roles: an array of strings, or one string of
    /// space-separated roles (OAuth `scope` style).
    pub roles_claim: String,
    /// Narrows the accepted algorithms within the key's family.
    pub algorithms: Option<Vec<Algorithm>>,
}

impl Default for JwtRules {
    fn default() -> Self {
        JwtRules {
            issuer: None,
            audience: None,
            leeway_s: 30,
            roles_claim: "roles".into(),
            algorithms: None,
        }
    }
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    rules: JwtRules,
}

/// Why a token was refused: said to the client as is (it reveals nothing
/// the client does not already hold), logged with the request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenRejected(pub String);

impl JwtVerifier {
    /// Builds a verifier; the error says what is wrong with the key or rules.
    pub fn new(key: KeySource<'_>, rules: JwtRules) -> Result<JwtVerifier, String> {
        let (key, family): (DecodingKey, &[Algorithm]) = match key {
            KeySource::Secret(secret) => {
                if secret.len() < MIN_SECRET {
                    return Err(format!(
                        "the JWT secret is {} bytes; use at least {MIN_SECRET} random bytes",
                        secret.len()
                    ));
                }
                (
                    DecodingKey::from_secret(secret),
                    &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                )
            }
            KeySource::PublicKeyPem(pem) => public_key(pem)?,
        };
        Self::with_key(key, family, rules)
    }

    /// A verifier for one key whose type allows `family`.
    pub fn with_key(
        key: DecodingKey,
        family: &[Algorithm],
        rules: JwtRules,
    ) -> Result<JwtVerifier, String> {
        let algorithms = match &rules.algorithms {
            Some(wanted) => {
                if wanted.is_empty() {
                    return Err("the list of JWT algorithms is empty".into());
                }
                if let Some(bad) = wanted.iter().find(|a| !family.contains(a)) {
                    return Err(format!(
                        "JWT algorithm {bad:?} does not fit the configured key (it takes {family:?})"
                    ));
                }
                wanted.clone()
            }
            None => family.to_vec(),
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = rules.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &rules.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier {
            key,
            validation,
            rules,
        })
    }

    /// The principal a valid token stands for.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenRejected> {
        refuse_critical(token)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| {
            // `alg: none` (and any name the library does not know) fails
            // as a header parse error; say what it really is.
            let unknown_alg = raw_alg(token).is_some_and(|alg| alg.parse::<Algorithm>().is_err());
            if unknown_alg {
                TokenRejected(reason(&ErrorKind::InvalidAlgorithm).into())
            } else {
                TokenRejected(reason(e.kind()).into())
            }
        })?;
        let mut claims = data.claims;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(TokenRejected(
                    "the token's sub claim is not a string".into(),
                ));
            }
        };
        let roles = roles(claims.remove(&self.rules.roles_claim))?;
        Ok(Principal {
            subject,
            roles,
            method: AuthMethod::Jwt {
                issuer: claims
                    .get("iss")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            },
            claims,
        })
    }
}

/// Why a token whose header cannot be read was refused.
pub(super) fn unreadable_header(token: &str) -> TokenRejected {
    let unknown_alg = raw_alg(token).is_some_and(|alg| alg.parse::<Algorithm>().is_err());
    TokenRejected(
        reason(if unknown_alg {
            &ErrorKind::InvalidAlgorithm
        } else {
            &ErrorKind::InvalidToken
        })
        .into(),
    )
}

/// A token's header as JSON, read without trusting anything in it.
fn raw_header(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `alg` a token's header names.
fn raw_alg(token: &str) -> Option<String> {
    raw_header(token)?.get("alg")?.as_str().map(str::to_string)
}

/// RFC 7515 §4.1.11: `crit` lists header extensions the verifier must
/// understand or refuse the token. The engine understands none, so any
/// `crit` (even naming a registered parameter, which the RFC forbids) is
/// refused rather than silently ignored.
pub(super) fn refuse_critical(token: &str) -> Result<(), TokenRejected> {
    match raw_header(token).as_ref().and_then(|h| h.get("crit")) {
        None => Ok(()),
        Some(_) => Err(TokenRejected(
            "the token's header has a crit list of extensions the engine does not understand"
                .into(),
        )),
    }
}

/// What an RSA key may sign with: PKCS#1 v1.5 and PSS.
pub(super) const RSA_FAMILY: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The key of a PEM public key file and the algorithms its type allows.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, &'static [Algorithm]), String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, RSA_FAMILY));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, &[Algorithm::ES256, Algorithm::ES384]));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, &[Algorithm::EdDSA]));
    }
    Err("the JWT public key is not a PEM RSA, EC or Ed25519 public key".into())
}

fn roles(claim: Option<Value>) -> Result<BTreeSet<String>, TokenRejected> {
    match claim {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_string).collect()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(TokenRejected("the token's roles must be strings".into())),
            })
            .collect(),
        Some(_) => Err(TokenRejected(
            "the token's roles claim must be a list of strings or a string".into(),
        )),
    }
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidAudience => "the token is for another audience",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => "the token's algorithm is not accepted here",
        ErrorKind::MissingRequiredClaim(_) => {
            "the token lacks a required claim (exp, sub, iss or aud)"
        }
        _ => "the token is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const RSA_KEY: &str = include_str!("testdata/rsa.key");
    const RSA_PUB: &str = include_str!("testdata/rsa.pub");
    const EC_KEY: &str = include_str!("testdata/ec.key");
    const EC_PUB: &str = include_str!("testdata/ec.pub");
    const ED_KEY: &str = include_str!("testdata/ed.key");
    const ED_PUB: &str = include_str!("testdata/ed.pub");

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({
            "sub": "ada", "iss": "https://id.example", "aud": "kiln",
            "exp": now() + 600, "roles": ["reader", "writer"], "team": "core"
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn rules() -> JwtRules {
        JwtRules {
            issuer: Some("https://id.example".into()),
            audience: Some("kiln".into()),
            ..JwtRules::default()
        }
    }

    fn hs(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn secret_verifier() -> JwtVerifier {
        JwtVerifier::new(KeySource::Secret(SECRET), rules()).unwrap()
    }

    fn rejected(verifier: &JwtVerifier, token: &str) -> String {
        verifier.verify(token).unwrap_err().0
    }

    #[test]
    fn every_hmac_size_verifies_and_algorithms_narrow_the_family() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = encode(
                &Header::new(alg),
                &claims(json!({})),
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            assert!(secret_verifier().verify(&token).is_ok(), "{alg:?}");
        }
        let mut only_256 = rules();
        only_256.algorithms = Some(vec![Algorithm::HS256]);
        let narrow = JwtVerifier::new(KeySource::Secret(SECRET), only_256).unwrap();
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims(json!({})),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            rejected(&narrow, &hs512),
            "the token's algorithm is not accepted here"
        );
    }

    #[test]
    fn a_good_token_becomes_a_principal() {
        let p = secret_verifier().verify(&hs(&claims(json!({})))).unwrap();
        assert_eq!(p.subject, "ada");
        assert_eq!(p.roles, ["reader".to_string(), "writer".to_string()].into());
        assert_eq!(p.claims["team"], "core");
        assert_eq!(
            p.method,
            AuthMethod::Jwt {
                issuer: Some("https://id.example".into())
            }
        );
        let scoped = secret_verifier()
            .verify(&hs(&claims(json!({ "roles": "a b" }))))
            .unwrap();
        assert_eq!(scoped.roles, ["a".to_string(), "b".to_string()].into());
    }

    #[test]
    fn time_issuer_audience_and_signature_are_checked() {
        let v = secret_verifier();
        let cases = [
            (json!({ "exp": now() - 120 }), "the token has expired"),
            (
                json!({ "nbf": now() + 120 }),
                "the token is not valid yet (nbf)",
            ),
            (
                json!({ "iss": "https://evil.example" }),
                "the token is from another issuer",
            ),
            (
                json!({ "aud": "other" }),
                "the token is for another audience",
            ),
            (
                json!({ "exp": null }),
                "the token lacks a required claim (exp, sub, iss or aud)",
            ),
            (
                json!({ "sub": null }),
                "the token lacks a required claim (exp, sub, iss or aud)",
            ),
            (json!({ "roles": [1] }), "the token's roles must be strings"),
        ];
        for (extra, expected) in cases {
            assert_eq!(
                rejected(&v, &hs(&claims(extra.clone()))),
                expected,
                "{extra}"
            );
        }
        // Within the leeway: accepted.
        assert!(v.verify(&hs(&claims(json!({ "exp": now() - 10 })))).is_ok());
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!"),
        )
        .unwrap();
        assert_eq!(
            rejected(&v, &forged),
            "the token's signature does not verify"
        );
        assert_eq!(rejected(&v, "not.a.token"), "the token is malformed");
    }

    #[test]
    fn alg_none_is_refused() {
        let b64 = |v: Value| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.",
            b64(json!({ "alg": "none", "typ": "JWT" })),
            b64(claims(json!({})))
        );
        assert_eq!(
            rejected(&secret_verifier(), &token),
            "the token's algorithm is not accepted here"
        );
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        // The classic attack: HS256 keyed with the RSA *public* key, sent to
        // a server that verifies RS256 with that key.
        let v = JwtVerifier::new(KeySource::PublicKeyPem(RSA_PUB.as_bytes()), rules()).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(RSA_PUB.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            rejected(&v, &confused),
            "the token's algorithm is not accepted here"
        );
        // And the right one passes.
        let good = encode(
            &Header::new(Algorithm::RS256),
            &claims(json!({})),
            &EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&good).unwrap().subject, "ada");
    }

    #[test]
    fn ec_and_ed25519_keys_verify_their_algorithms() {
        let ec = JwtVerifier::new(KeySource::PublicKeyPem(EC_PUB.as_bytes()), rules()).unwrap();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &claims(json!({})),
            &EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(ec.verify(&token).is_ok());
        let ed = JwtVerifier::new(KeySource::PublicKeyPem(ED_PUB.as_bytes()), rules()).unwrap();
        let token = encode(
            &Header::new(Algorithm::EdDSA),
            &claims(json!({})),
            &EncodingKey::from_ed_pem(ED_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(ed.verify(&token).is_ok());
        // An EdDSA token against the EC key: wrong family.
        assert_eq!(
            rejected(&ec, &token),
            "the token's algorithm is not accepted here"
        );
    }

    #[test]
    fn bad_keys_and_rules_are_refused_at_configuration() {
        let e = JwtVerifier::new(KeySource::Secret(b"short"), rules())
            .err()
            .unwrap();
        assert!(e.contains("at least 32"), "{e}");
        let e = JwtVerifier::new(KeySource::PublicKeyPem(b"nope"), rules())
            .err()
            .unwrap();
        assert!(e.contains("not a PEM"), "{e}");
        let mut r = rules();
        r.algorithms = Some(vec![Algorithm::RS256]);
        let e = JwtVerifier::new(KeySource::Secret(SECRET), r)
            .err()
            .unwrap();
        assert!(e.contains("does not fit the configured key"), "{e}");
    }

    #[test]
    fn a_token_with_a_crit_header_is_refused_even_when_well_signed() {
        use base64::Engine as _;
        // A token with this exact header, correctly signed with SECRET.
        let signed = |header: Value| {
            let b64 = |v: &Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
            };
            let message = format!("{}.{}", b64(&header), b64(&claims(json!({}))));
            let signature = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(SECRET),
                Algorithm::HS256,
            )
            .unwrap();
            format!("{message}.{signature}")
        };
        let v = secret_verifier();
        for crit in [json!(["exp"]), json!(["x-made-up"]), json!([])] {
            let token = signed(json!({"alg": "HS256", "typ": "JWT", "crit": crit, "x-made-up": 1}));
            let why = rejected(&v, &token);
            assert!(why.contains("crit"), "{crit}: {why}");
        }
        // The same token without crit verifies: the signature was good.
        assert!(
            v.verify(&signed(json!({"alg": "HS256", "typ": "JWT"})))
                .is_ok()
        );
    }
}
