//! API keys: `kk_<8 hex>_<43 characters>`. The first part (`kk_3f9a1c2b`) is
//! the public key id the record is found by; the whole key is shown once,
//! at creation, and only its SHA-256 is stored. A key is 256 random bits,
//! so a fast hash is enough: there is nothing to guess from it.
//!
//! Checks are cached (default 5 minutes) so a key costs one database read
//! per cache period, not per request; revoking removes the key from this
//! engine's cache at once.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::principal::{AuthMethod, Principal};
use crate::store::DataError;
use crate::store::api_keys::{KeyRecord, KeyStore};

pub const PREFIX: &str = "kk_";
const MAX_NAME: usize = 64;
const MAX_ROLES: usize = 32;

/// Why a presented key was refused (said to the client as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejected {
    #[error("the API key is malformed")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("API keys cannot be checked right now; try again later")]
    Unavailable,
}

#[derive(Clone)]
pub struct ApiKeys {
    store: KeyStore,
    /// key id → record (or none: unknown), for `ttl`.
    cache: moka::future::Cache<String, Arc<Option<KeyRecord>>>,
}

/// A newly created key: the record and the key itself, shown once.
pub struct NewKey {
    pub record: KeyRecord,
    pub key: String,
}

impl ApiKeys {
    pub fn new(store: KeyStore, ttl: Duration) -> Self {
        ApiKeys {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Creates a key named `name` with `roles`.
    pub async fn create(&self, name: &str, roles: &[String]) -> Result<NewKey, DataError> {
        check_name(name)?;
        check_roles(roles)?;
        let mut random = [0u8; 36];
        rand::rng().fill_bytes(&mut random);
        let key_id = format!("{PREFIX}{}", hex::encode(&random[..4]));
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&random[4..]);
        let key = format!("{key_id}_{secret}");
        let record = self.store.insert(&key_id, name, roles, &hash(&key)).await?;
        self.cache.invalidate(&key_id).await;
        Ok(NewKey { record, key })
    }

    pub async fn list(&self) -> Result<Vec<KeyRecord>, DataError> {
        self.store.list().await
    }

    /// Revokes a key by id or name; effective on this engine at once.
    pub async fn revoke(&self, id_or_name: &str) -> Result<Option<KeyRecord>, DataError> {
        let revoked = self.store.revoke(id_or_name).await?;
        if let Some(record) = &revoked {
            self.forget(&record.key_id).await;
        }
        Ok(revoked)
    }

    /// Drops a key from this engine's cache (also called when another
    /// engine says it revoked one).
    pub async fn forget(&self, key_id: &str) {
        self.cache.invalidate(key_id).await;
    }

    /// Drops every cached check (after missing revocations).
    pub async fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// The principal a presented key stands for.
    pub async fn verify(&self, presented: &str) -> Result<Principal, KeyRejected> {
        let key_id = key_id_of(presented).ok_or(KeyRejected::Malformed)?;
        let record = match self.cache.get(key_id).await {
            Some(cached) => cached,
            None => {
                let found = self.store.get(key_id).await.map_err(|e| {
                    tracing::error!(error = %e, "reading API keys failed");
                    KeyRejected::Unavailable
                })?;
                let found = Arc::new(found);
                self.cache.insert(key_id.to_string(), found.clone()).await;
                found
            }
        };
        let Some(record) = record.as_ref() else {
            return Err(KeyRejected::Unknown);
        };
        if !constant_time_eq(hash(presented).as_bytes(), record.key_hash.as_bytes()) {
            return Err(KeyRejected::Unknown);
        }
        if record.revoked_at.is_some() {
            return Err(KeyRejected::Revoked);
        }
        Ok(Principal {
            subject: record.name.clone(),
            roles: record.roles.iter().cloned().collect(),
            claims: serde_json::Map::new(),
            method: AuthMethod::ApiKey {
                key_id: record.key_id.clone(),
            },
        })
    }
}

/// The key id a presented key claims, if it has the shape of a key.
fn key_id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 8
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| &presented[..PREFIX.len() + 8])
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_name(name: &str) -> Result<(), DataError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "key name {name:?} must be 1-{MAX_NAME} characters of letters, digits, '_', '-', '.'"
        )))
    }
}

fn check_roles(roles: &[String]) -> Result<(), DataError> {
    if roles.len() > MAX_ROLES {
        return Err(DataError::Invalid(format!(
            "at most {MAX_ROLES} roles per key"
        )));
    }
    if let Some(bad) = roles
        .iter()
        .find(|r| r.is_empty() || r.len() > 64 || !r.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(DataError::Invalid(format!(
            "role {bad:?} must be 1-64 visible characters without spaces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Database;
    use crate::store::DatabaseConfig;

    async fn keys() -> (tempfile::TempDir, ApiKeys) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::connect(&DatabaseConfig::default(), tmp.path())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (
            tmp,
            ApiKeys::new(KeyStore::new(db), Duration::from_secs(300)),
        )
    }

    #[test]
    fn only_well_formed_keys_have_an_id() {
        let good = format!("kk_0123abcd_{}", "a".repeat(43));
        assert_eq!(key_id_of(&good), Some("kk_0123abcd"));
        assert_eq!(key_id_of("kk_0123abcd_short"), None);
        assert_eq!(key_id_of(&format!("xx_0123abcd_{}", "a".repeat(43))), None);
        assert_eq!(key_id_of(&format!("kk_0123abcZ_{}", "a".repeat(43))), None);
        assert_eq!(key_id_of(&format!("kk_0123abcd_{}!", "a".repeat(42))), None);
    }

    #[tokio::test]
    async fn create_verify_list_and_revoke() {
        let (_tmp, keys) = keys().await;
        let created = keys.create("ci", &["reader".into()]).await.unwrap();
        assert!(created.key.starts_with(&created.record.key_id));
        assert_eq!(created.key.len(), 3 + 8 + 1 + 43);

        let principal = keys.verify(&created.key).await.unwrap();
        assert_eq!(principal.subject, "ci");
        assert!(principal.has_role("reader"));
        assert_eq!(
            principal.method,
            AuthMethod::ApiKey {
                key_id: created.record.key_id.clone()
            }
        );

        // Same id, wrong secret: unknown (the id alone proves nothing).
        let forged = format!("{}_{}", created.record.key_id, "A".repeat(43));
        assert_eq!(keys.verify(&forged).await, Err(KeyRejected::Unknown));
        assert_eq!(keys.verify("nonsense").await, Err(KeyRejected::Malformed));
        let stranger = format!("kk_00000000_{}", "a".repeat(43));
        assert_eq!(keys.verify(&stranger).await, Err(KeyRejected::Unknown));

        let listed = keys.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "ci");
        // The hash is never serialized (admin API, CLI output).
        assert!(
            serde_json::to_value(&listed[0])
                .unwrap()
                .get("key_hash")
                .is_none()
        );

        // Revoked: refused at once, though the check was cached.
        let revoked = keys.revoke("ci").await.unwrap().unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(keys.verify(&created.key).await, Err(KeyRejected::Revoked));
        assert_eq!(keys.revoke("ci").await.unwrap(), None);

        // Names stay taken after revocation.
        let again = keys.create("ci", &[]).await.err().unwrap();
        assert!(again.to_string().contains("already exists"), "{again}");
    }

    #[tokio::test]
    async fn bad_names_and_roles_are_refused() {
        let (_tmp, keys) = keys().await;
        assert!(keys.create("", &[]).await.is_err());
        assert!(keys.create("has space", &[]).await.is_err());
        assert!(keys.create("ok", &["two words".into()]).await.is_err());
    }
}
