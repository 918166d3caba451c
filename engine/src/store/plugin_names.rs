//! The `plugin_names` table: which file in the plugin directory owns each
//! plugin name. Every per-plugin scope — kv namespace, cache namespace, SQL
//! database or schema — hangs off the manifest name, which the guest chooses;
//! binding the name to the first file that declared it makes the scope the
//! operator's (who names the files), not the plugin author's. Another file
//! declaring a taken name is refused until the operator releases the name
//! (`kiln plugins release NAME` or the admin API), whether the owner is
//! loaded, unloaded, or was loaded before a restart.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::{DataError, Database};

/// Who owns a name, since when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NameClaim {
    pub name: String,
    /// The owning file's name in the plugin directory (`notes-rust.wasm`).
    pub file: String,
    /// Unix seconds.
    pub claimed_at: i64,
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The name is this file's (claimed now or before).
    Owned,
    /// Another file owns it.
    Taken(NameClaim),
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unavailable(e: sqlx::Error) -> DataError {
    DataError::Unavailable(e.to_string())
}

fn claim_of<R: Row>(row: &R) -> Result<NameClaim, DataError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(NameClaim {
        name: row.try_get("name").map_err(unavailable)?,
        file: row.try_get("file").map_err(unavailable)?,
        claimed_at: row.try_get("claimed_at").map_err(unavailable)?,
    })
}

#[derive(Clone)]
pub struct PluginNames {
    db: Database,
}

impl PluginNames {
    pub fn new(db: Database) -> Self {
        PluginNames { db }
    }

    /// Claims `name` for `file` unless another file owns it. Atomic in the
    /// database, so two engines sharing it agree on one owner.
    pub async fn claim(&self, name: &str, file: &str) -> Result<Claimed, DataError> {
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO plugin_names (name, file, claimed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(file)
        .bind(now_s())
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable)?);
        let owner = self.get(name).await?.ok_or_else(|| {
            DataError::Unavailable(format!("the claim on plugin name '{name}' vanished"))
        })?;
        Ok(if owner.file == file {
            Claimed::Owned
        } else {
            Claimed::Taken(owner)
        })
    }

    pub async fn get(&self, name: &str) -> Result<Option<NameClaim>, DataError> {
        on_pool!(&self.db, pool => {
            match sqlx::query("SELECT name, file, claimed_at FROM plugin_names WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?
            {
                Some(row) => claim_of(&row).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Every claim, by name.
    pub async fn list(&self) -> Result<Vec<NameClaim>, DataError> {
        on_pool!(&self.db, pool => {
            sqlx::query("SELECT name, file, claimed_at FROM plugin_names ORDER BY name")
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(claim_of)
                .collect()
        })
    }

    /// Releases `name`; the claim that was released, if there was one. The
    /// name's data stays: the next file to declare the name gets it.
    pub async fn release(&self, name: &str) -> Result<Option<NameClaim>, DataError> {
        let Some(claim) = self.get(name).await? else {
            return Ok(None);
        };
        on_pool!(&self.db, pool => sqlx::query("DELETE FROM plugin_names WHERE name = $1 AND file = $2")
            .bind(name)
            .bind(&claim.file)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(unavailable)?);
        Ok(Some(claim))
    }
}
