//! The `api_keys` table: records of API keys, never the keys themselves.
//! What a key looks like and how one is checked lives in
//! `identity::api_keys`; this is only storage.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::{DataError, Database};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    /// The public prefix the key starts with; how it is found.
    pub key_id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// Hex SHA-256 of the whole key. Never shown.
    #[serde(skip)]
    pub key_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
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

const COLUMNS: &str = "key_id, name, roles, key_hash, created_at, revoked_at";

fn record<R: Row>(row: &R) -> Result<KeyRecord, DataError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let roles: String = row.try_get("roles").map_err(unavailable)?;
    Ok(KeyRecord {
        key_id: row.try_get("key_id").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        roles: serde_json::from_str(&roles)
            .map_err(|e| DataError::Unavailable(format!("api_keys.roles is not JSON: {e}")))?,
        key_hash: row.try_get("key_hash").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        revoked_at: row.try_get("revoked_at").map_err(unavailable)?,
    })
}

#[derive(Clone)]
pub struct KeyStore {
    db: Database,
}

impl KeyStore {
    pub fn new(db: Database) -> Self {
        KeyStore { db }
    }

    /// Stores a new key record; a taken name is `Invalid`.
    pub async fn insert(
        &self,
        key_id: &str,
        name: &str,
        roles: &[String],
        key_hash: &str,
    ) -> Result<KeyRecord, DataError> {
        let roles_json =
            serde_json::to_string(roles).map_err(|e| DataError::Invalid(format!("roles: {e}")))?;
        let created_at = now_s();
        let result = on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO api_keys (key_id, name, roles, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key_id)
        .bind(name)
        .bind(&roles_json)
        .bind(key_hash)
        .bind(created_at)
        .execute(pool)
        .await
        .map(|_| ()));
        match result {
            Ok(_) => Ok(KeyRecord {
                key_id: key_id.to_string(),
                name: name.to_string(),
                roles: roles.to_vec(),
                key_hash: key_hash.to_string(),
                created_at,
                revoked_at: None,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(DataError::Invalid(format!(
                    "an API key named '{name}' already exists (names are kept after revocation)"
                )))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The record of `key_id`, revoked or not.
    pub async fn get(&self, key_id: &str) -> Result<Option<KeyRecord>, DataError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = $1");
        on_pool!(&self.db, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(key_id)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?
            {
                Some(row) => record(&row).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, DataError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, key_id");
        on_pool!(&self.db, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .map_err(unavailable)?
                .iter()
                .map(record)
                .collect()
        })
    }

    /// Revokes the key with this id or name; the record of the revoked key,
    /// or none when no active key matches.
    pub async fn revoke(&self, id_or_name: &str) -> Result<Option<KeyRecord>, DataError> {
        let now = now_s();
        let done = on_pool!(&self.db, pool => sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE (key_id = $2 OR name = $2) AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id_or_name)
        .execute(pool)
        .await
        .map_err(unavailable)?
        .rows_affected());
        if done == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = $1 OR name = $1");
        on_pool!(&self.db, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id_or_name)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?
            {
                Some(row) => record(&row).map(Some),
                None => Ok(None),
            }
        })
    }
}
