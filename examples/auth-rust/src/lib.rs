//! An auth provider: a frontend that shares a key with the engine signs
//! who its user is, and the engine trusts that instead of a token.
//!
//! The frontend sends
//!
//! ```text
//! X-Signed-User: ada
//! X-Signed-Roles: editor,reader          (optional)
//! X-Signed-At: 1795000000                (unix seconds)
//! X-Signature: hex(HMAC-SHA256(key, "ada\neditor,reader\n1795000000"))
//! ```
//!
//! and the provider answers: no `X-Signed-User` → not ours (the engine asks
//! the next provider, or treats the caller as anonymous); a signature that
//! does not match, or a timestamp more than five minutes off → 401.
//!
//! Enable it in the engine config, and give it the key as a secret (only
//! the engine config may map secrets to environment variables):
//!
//! ```toml
//! # kiln.toml
//! [identity]
//! providers = ["auth-rust/signed-header"]
//!
//! [plugins.auth-rust.secrets]
//! signing_key = "KILN_SIGNING_KEY"     # the environment variable that holds it
//! ```

use kiln_sdk::auth::{Providers, Verified};
use kiln_sdk::{Error, Plugin, Request, Result};
use sha2::{Digest, Sha256};

/// How far the signer's clock may be from ours, either way.
const MAX_SKEW_S: u64 = 300;

struct Auth;

impl Plugin for Auth {
    fn auth() -> Providers {
        Providers::new().provider("signed-header", signed_header)
    }
}

fn signed_header(req: &Request) -> Result<Option<Verified>> {
    let Some(user) = req.header("x-signed-user") else {
        return Ok(None);
    };
    let Some(key) = kiln_sdk::config::secret("signing_key") else {
        kiln_sdk::log::warn("x-signed-user sent but no signing_key secret is configured");
        return Err(Error::unauthorized(
            "signed headers are not configured on this engine",
        ));
    };
    let roles = req.header("x-signed-roles").unwrap_or("");
    let at = req.header("x-signed-at").unwrap_or("");
    let signed_at: u64 = at
        .parse()
        .map_err(|_| Error::unauthorized("x-signed-at must be unix seconds"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now.abs_diff(signed_at) > MAX_SKEW_S {
        return Err(Error::unauthorized("the signature has expired"));
    }
    let expected = hmac_sha256(key.as_bytes(), format!("{user}\n{roles}\n{at}").as_bytes());
    let given = req
        .header("x-signature")
        .and_then(|s| hex::decode(s).ok())
        .unwrap_or_default();
    if !constant_time_eq(&expected, &given) {
        return Err(Error::unauthorized("the signature does not match"));
    }
    let roles: Vec<&str> = roles.split(',').filter(|r| !r.is_empty()).collect();
    Ok(Some(
        Verified::new(user)
            .roles(&roles)
            .claims(serde_json::json!({ "signed_at": signed_at })),
    ))
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

kiln_sdk::export_plugin!(Auth);

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
