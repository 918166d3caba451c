//! `kiln plugins names|release`: who owns each plugin name, in the engine's
//! database. A name (and the kv, cache and SQL data under it) belongs to the
//! first file that declared it; releasing it is the operator's explicit act.

use crate::config::Config;
use crate::store::audit::AuditLog;
use crate::store::plugin_names::PluginNames;
use crate::store::rfc3339;

pub async fn names(config: &Config) -> anyhow::Result<()> {
    let db = crate::server::open_database(config).await?;
    let listed = PluginNames::new(db.clone()).list().await;
    db.close().await;
    let listed = listed.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{:<32} {:<40} CLAIMED", "NAME", "FILE");
    for claim in listed {
        println!(
            "{:<32} {:<40} {}",
            claim.name,
            claim.file,
            rfc3339(claim.claimed_at)
        );
    }
    Ok(())
}

pub async fn release(config: &Config, name: &str) -> anyhow::Result<()> {
    let db = crate::server::open_database(config).await?;
    let released = PluginNames::new(db.clone()).release(name).await;
    if let Ok(Some(claim)) = &released {
        AuditLog::new(db.clone())
            .record(
                "cli",
                "plugin_name.released",
                Some(&claim.name),
                serde_json::json!({ "file": claim.file, "via": "cli" }),
            )
            .await;
    }
    db.close().await;
    match released.map_err(|e| anyhow::anyhow!("{e}"))? {
        Some(claim) => {
            println!(
                "released plugin name '{}' (owned by {}); the next file that declares it \
                 owns it and its data",
                claim.name, claim.file
            );
            Ok(())
        }
        None => anyhow::bail!("no file owns the plugin name '{name}'"),
    }
}
