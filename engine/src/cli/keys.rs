//! `kiln keys create|list|revoke`: API keys managed directly in the
//! engine's database (the one `[database] url` names), so the first key —
//! the first admin credential — is made by an explicit command on the
//! server, never by default.

use std::time::Duration;

use crate::config::Config;
use crate::identity::api_keys::ApiKeys;
use crate::identity::revocations::Revocations;
use crate::store::api_keys::{KeyRecord, KeyStore};
use crate::store::audit::AuditLog;

async fn keys(config: &Config) -> anyhow::Result<(crate::store::Database, ApiKeys)> {
    let db = crate::server::open_database(config).await?;
    let keys = ApiKeys::new(KeyStore::new(db.clone()), Duration::from_secs(1));
    Ok((db, keys))
}

/// Creates a key and prints it once, with a warning that it is not kept.
pub async fn create(config: &Config, name: &str, roles: &[String]) -> anyhow::Result<()> {
    let (db, keys) = keys(config).await?;
    let created = keys.create(name, roles).await;
    if let Ok(new) = &created {
        AuditLog::new(db.clone())
            .record(
                "cli",
                "key.created",
                Some(&new.record.key_id),
                serde_json::json!({ "name": new.record.name, "roles": new.record.roles, "via": "cli" }),
            )
            .await;
    }
    db.close().await;
    let created = created.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", created.key);
    eprintln!(
        "created API key '{}' ({}) with roles [{}]. The key above is shown only now: \
         store it; the engine keeps only its hash.",
        created.record.name,
        created.record.key_id,
        created.record.roles.join(", ")
    );
    Ok(())
}

pub async fn list(config: &Config) -> anyhow::Result<()> {
    let (db, keys) = keys(config).await?;
    let listed = keys.list().await;
    db.close().await;
    let listed = listed.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{:<12} {:<24} {:<10} {:<20} ROLES",
        "ID", "NAME", "STATE", "CREATED"
    );
    for KeyRecord {
        key_id,
        name,
        roles,
        created_at,
        revoked_at,
        ..
    } in listed
    {
        let state = if revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{key_id:<12} {name:<24} {state:<10} {:<20} {}",
            crate::store::rfc3339(created_at),
            roles.join(",")
        );
    }
    Ok(())
}

pub async fn revoke(config: &Config, id_or_name: &str) -> anyhow::Result<()> {
    let (db, keys) = keys(config).await?;
    let revoked = keys.revoke(id_or_name).await;
    // Running engines drop the key from their caches when Redis tells them.
    let redis = config
        .redis
        .url
        .as_ref()
        .map(|url| (&config.redis, url.expose()));
    let announcer = Revocations::publisher(redis).map_err(anyhow::Error::msg)?;
    let announced = match &revoked {
        Ok(Some(record)) => {
            let announced = announcer.announce(&record.key_id).await;
            AuditLog::new(db.clone())
                .record(
                    "cli",
                    "key.revoked",
                    Some(&record.key_id),
                    serde_json::json!({ "name": record.name, "via": "cli", "announced": announced }),
                )
                .await;
            announced
        }
        _ => true,
    };
    db.close().await;
    match revoked.map_err(|e| anyhow::anyhow!("{e}"))? {
        Some(record) => {
            println!("revoked API key '{}' ({})", record.name, record.key_id);
            if config.redis.url.is_none() {
                eprintln!(
                    "running engines trust the key until their cache entry expires \
                     (admin.key_cache_ttl_ms) or they restart; with redis.url set they drop it at once"
                );
            } else if !announced {
                eprintln!(
                    "warning: Redis did not take the announcement; running engines trust the key until their cache entry expires"
                );
            }
            Ok(())
        }
        None => anyhow::bail!("no active API key has the id or name '{id_or_name}'"),
    }
}
