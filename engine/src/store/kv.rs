//! Plugin key-value data in the engine's database, one namespace per plugin.
//! The same SQL serves SQLite and PostgreSQL (sqlx maps `$N` on both); the
//! atomic operations are single statements or, for `increment` on SQLite, an
//! immediate (write-locking) transaction.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::Database;

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
pub const MAX_LIST: u32 = 1000;

use super::DataError as KvError;

fn unavailable(e: sqlx::Error) -> KvError {
    KvError::Unavailable(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "key must be 1-{MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Invalid(format!(
            "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

fn expiry(ttl_ms: Option<u64>) -> Result<Option<i64>, KvError> {
    match ttl_ms {
        None => Ok(None),
        Some(0) => Err(KvError::Invalid("ttl-ms must be greater than 0".into())),
        Some(ttl) => i64::try_from(ttl)
            .ok()
            .and_then(|t| now_ms().checked_add(t))
            .map(Some)
            .ok_or_else(|| KvError::Invalid(format!("ttl-ms {ttl} is too large"))),
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` when there is none (empty prefix).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn parse_counter(value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| KvError::Invalid("the value at this key is not an integer".into()))
}

const LIVE: &str = "(expires_at IS NULL OR expires_at > $3)";

/// The store, shared by all plugins; every call names the namespace.
#[derive(Clone)]
pub struct Kv {
    db: Database,
    /// SQLite takes one writer at a time; writers that find it busy sleep
    /// with a growing back-off inside SQLite, which made tail latency under
    /// contention hundreds of milliseconds. Queueing writers here instead
    /// keeps the same throughput without the sleeps. Unused for PostgreSQL.
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
}

impl Kv {
    pub fn new(db: Database) -> Self {
        Kv {
            db,
            sqlite_writer: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Held across a write on SQLite; nothing on PostgreSQL.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.db {
            Database::Sqlite(_) => Some(self.sqlite_writer.lock().await),
            Database::Postgres(_) => None,
        }
    }

    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        let sql = format!("SELECT value FROM kv WHERE plugin = $1 AND key = $2 AND {LIVE}");
        let row = on_pool!(&self.db, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ns)
            .bind(key.as_bytes())
            .bind(now_ms())
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?
            .map(|r| r.get::<Vec<u8>, _>(0)));
        Ok(row)
    }

    pub async fn set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        let expires = expiry(ttl_ms)?;
        let _turn = self.write_turn().await;
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO kv (plugin, key, value, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(ns)
        .bind(key.as_bytes())
        .bind(value)
        .bind(expires)
        .execute(pool)
        .await
        .map_err(unavailable)?
        .rows_affected());
        Ok(())
    }

    pub async fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let sql = format!("DELETE FROM kv WHERE plugin = $1 AND key = $2 AND {LIVE}");
        let _turn = self.write_turn().await;
        let done = on_pool!(&self.db, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ns)
            .bind(key.as_bytes())
            .bind(now_ms())
            .execute(pool)
            .await
            .map_err(unavailable)?
            .rows_affected());
        Ok(done > 0)
    }

    pub async fn list_keys(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        if limit == 0 || limit > MAX_LIST {
            return Err(KvError::Invalid(format!(
                "limit must be 1-{MAX_LIST}, got {limit}"
            )));
        }
        if prefix.len() > MAX_KEY_BYTES {
            return Err(KvError::Invalid(format!(
                "prefix is longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        let sql = "SELECT key FROM kv WHERE plugin = $1 AND key >= $2
             AND (expires_at IS NULL OR expires_at > $3)
             AND ($4 IS NULL OR key < $4) AND ($5 IS NULL OR key > $5)
             ORDER BY key LIMIT $6";
        let end = prefix_end(prefix.as_bytes());
        let after = after.map(|a| a.as_bytes().to_vec());
        let rows: Vec<Vec<u8>> = on_pool!(&self.db, pool => sqlx::query(sql)
            .bind(ns)
            .bind(prefix.as_bytes())
            .bind(now_ms())
            .bind(end)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|r| r.get::<Vec<u8>, _>(0))
            .collect());
        // Keys are only ever written from strings.
        Ok(rows
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    pub async fn increment(&self, ns: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        check_key(key)?;
        let now = now_ms();
        match &self.db {
            Database::Sqlite(pool) => {
                let _turn = self.write_turn().await;
                // IMMEDIATE takes the write lock first, so no other writer can
                // slip in between the read and the write.
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(unavailable)?;
                let current: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT value FROM kv WHERE plugin = $1 AND key = $2
                     AND (expires_at IS NULL OR expires_at > $3)",
                )
                .bind(ns)
                .bind(key.as_bytes())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
                let base = current
                    .as_deref()
                    .map(parse_counter)
                    .transpose()?
                    .unwrap_or(0);
                let next = base.checked_add(delta).ok_or_else(|| {
                    KvError::Invalid("the increment overflows a 64-bit integer".into())
                })?;
                sqlx::query(
                    "INSERT INTO kv (plugin, key, value, expires_at) VALUES ($1, $2, $3, NULL)
                     ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value,
                     expires_at = CASE WHEN kv.expires_at > $4 THEN kv.expires_at ELSE NULL END",
                )
                .bind(ns)
                .bind(key.as_bytes())
                .bind(next.to_string().into_bytes())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(next)
            }
            Database::Postgres(pool) => {
                // One statement: the row lock of ON CONFLICT makes it atomic.
                let row = sqlx::query(
                    "INSERT INTO kv (plugin, key, value, expires_at)
                     VALUES ($1, $2, convert_to($3::bigint::text, 'UTF8'), NULL)
                     ON CONFLICT (plugin, key) DO UPDATE SET
                       value = convert_to((
                         CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $4 THEN 0
                              ELSE convert_from(kv.value, 'UTF8')::bigint END + $3::bigint)::text, 'UTF8'),
                       expires_at = CASE WHEN kv.expires_at > $4 THEN kv.expires_at ELSE NULL END
                     RETURNING value",
                )
                .bind(ns)
                .bind(key.as_bytes())
                .bind(delta)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|e| match e.as_database_error().and_then(|d| d.code()).as_deref() {
                    // invalid text for bigint, or not UTF-8
                    Some("22P02") | Some("22021") => {
                        KvError::Invalid("the value at this key is not an integer".into())
                    }
                    Some("22003") => {
                        KvError::Invalid("the increment overflows a 64-bit integer".into())
                    }
                    _ => unavailable(e),
                })?;
                parse_counter(&row.get::<Vec<u8>, _>(0))
            }
        }
    }

    pub async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<bool, KvError> {
        check_key(key)?;
        check_value(value)?;
        let expires = expiry(ttl_ms)?;
        let now = now_ms();
        let _turn = self.write_turn().await;
        let changed = match expected {
            // Only when absent (or expired).
            None => on_pool!(&self.db, pool => sqlx::query(
                "INSERT INTO kv (plugin, key, value, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
                 WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5",
            )
            .bind(ns)
            .bind(key.as_bytes())
            .bind(value)
            .bind(expires)
            .bind(now)
            .execute(pool)
            .await
            .map_err(unavailable)?
            .rows_affected()),
            Some(old) => on_pool!(&self.db, pool => sqlx::query(
                "UPDATE kv SET value = $3, expires_at = $4
                 WHERE plugin = $1 AND key = $2 AND value = $5
                 AND (expires_at IS NULL OR expires_at > $6)",
            )
            .bind(ns)
            .bind(key.as_bytes())
            .bind(value)
            .bind(expires)
            .bind(old)
            .bind(now)
            .execute(pool)
            .await
            .map_err(unavailable)?
            .rows_affected()),
        };
        Ok(changed == 1)
    }

    /// Deletes expired entries; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64, KvError> {
        let _turn = self.write_turn().await;
        let done = on_pool!(&self.db, pool => sqlx::query(
            "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now_ms())
        .execute(pool)
        .await
        .map_err(unavailable)?
        .rows_affected());
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseConfig;

    async fn sqlite() -> (tempfile::TempDir, Kv) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::connect(&DatabaseConfig::default(), tmp.path())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (tmp, Kv::new(db))
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff"), None);
    }

    #[tokio::test]
    async fn operations_on_sqlite() {
        let (_tmp, kv) = sqlite().await;
        assert_eq!(kv.get("a", "k").await.unwrap(), None);
        kv.set("a", "k", b"v1", None).await.unwrap();
        assert_eq!(kv.get("a", "k").await.unwrap().as_deref(), Some(&b"v1"[..]));
        // Namespaces are separate.
        assert_eq!(kv.get("b", "k").await.unwrap(), None);

        assert!(
            !kv.compare_and_swap("a", "k", Some(b"nope"), b"v2", None)
                .await
                .unwrap()
        );
        assert!(
            kv.compare_and_swap("a", "k", Some(b"v1"), b"v2", None)
                .await
                .unwrap()
        );
        assert!(
            !kv.compare_and_swap("a", "k", None, b"v3", None)
                .await
                .unwrap()
        );
        assert!(
            kv.compare_and_swap("a", "new", None, b"x", None)
                .await
                .unwrap()
        );

        assert_eq!(kv.increment("a", "n", 5).await.unwrap(), 5);
        assert_eq!(kv.increment("a", "n", -7).await.unwrap(), -2);
        assert!(matches!(
            kv.increment("a", "k", 1).await,
            Err(KvError::Invalid(_))
        ));
        kv.set("a", "big", i64::MAX.to_string().as_bytes(), None)
            .await
            .unwrap();
        assert!(
            kv.increment("a", "big", 1)
                .await
                .unwrap_err()
                .to_string()
                .contains("overflow")
        );

        for k in ["user:1", "user:2", "user:3", "users", "other"] {
            kv.set("a", k, b"", None).await.unwrap();
        }
        assert_eq!(
            kv.list_keys("a", "user:", None, 10).await.unwrap(),
            ["user:1", "user:2", "user:3"]
        );
        assert_eq!(
            kv.list_keys("a", "user:", Some("user:1"), 1).await.unwrap(),
            ["user:2"]
        );
        assert_eq!(
            kv.list_keys("b", "", None, 10).await.unwrap(),
            Vec::<String>::new()
        );

        assert!(kv.delete("a", "k").await.unwrap());
        assert!(!kv.delete("a", "k").await.unwrap());
    }

    #[tokio::test]
    async fn expiry_hides_and_sweeps() {
        let (_tmp, kv) = sqlite().await;
        kv.set("a", "t", b"v", Some(30)).await.unwrap();
        assert!(kv.get("a", "t").await.unwrap().is_some());
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        assert_eq!(kv.get("a", "t").await.unwrap(), None);
        assert_eq!(
            kv.list_keys("a", "", None, 10).await.unwrap(),
            Vec::<String>::new()
        );
        // An expired counter starts again from zero, and CAS treats it as absent.
        assert!(
            kv.compare_and_swap("a", "t", None, b"again", None)
                .await
                .unwrap()
        );
        kv.set("a", "gone", b"v", Some(1)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(kv.sweep_expired().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_the_reason() {
        let (_tmp, kv) = sqlite().await;
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(
            kv.get("a", &long)
                .await
                .unwrap_err()
                .to_string()
                .contains("1-512 bytes")
        );
        assert!(kv.get("a", "").await.is_err());
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(
            kv.set("a", "k", &big, None)
                .await
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        assert!(kv.set("a", "k", b"v", Some(0)).await.is_err());
        assert!(kv.list_keys("a", "", None, 0).await.is_err());
        assert!(kv.list_keys("a", "", None, MAX_LIST + 1).await.is_err());
    }

    #[tokio::test]
    async fn concurrent_increments_lose_nothing() {
        let (_tmp, kv) = sqlite().await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        kv.increment("a", "hits", 1).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            kv.get("a", "hits").await.unwrap().as_deref(),
            Some(&b"200"[..])
        );
    }
}
