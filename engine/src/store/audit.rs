//! The audit log: who did what to the engine's security state — API keys
//! created and revoked (through the CLI or the admin API), admin calls that
//! change something, and bursts of failed authentication. Rows never hold
//! a secret: keys appear by their public id, tokens not at all.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::Row;

use super::{DataError, Database};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Who: a principal's subject, `admin-token`, `cli`, or a client IP.
    pub actor: String,
    /// What: `key.created`, `key.revoked`, `auth.failures`, ...
    pub action: String,
    /// On what: a key id, a path.
    pub target: Option<String>,
    /// Anything else, as JSON (never a secret).
    pub detail: serde_json::Value,
}

#[derive(Clone)]
pub struct AuditLog {
    db: Database,
}

fn unavailable(e: sqlx::Error) -> DataError {
    DataError::Unavailable(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl AuditLog {
    pub fn new(db: Database) -> Self {
        AuditLog { db }
    }

    /// Appends one event. A failure is logged, never returned: the action
    /// it describes has already happened.
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: serde_json::Value,
    ) {
        let detail_text = detail.to_string();
        let result = on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(&detail_text)
        .execute(pool)
        .await
        .map(|_| ()));
        match result {
            Ok(()) => {
                tracing::info!(target: "audit", actor, action, target, detail = %detail_text, "audit")
            }
            Err(e) => {
                tracing::error!(actor, action, target, error = %e, "writing the audit log failed")
            }
        }
    }

    /// The newest `limit` events, newest first (ids before `before`, for
    /// paging).
    pub async fn recent(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEvent>, DataError> {
        let before = before.unwrap_or(i64::MAX);
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT id, at, actor, action, target, detail FROM audit_log \
                 WHERE id < $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    let detail: String = row.try_get("detail").map_err(unavailable)?;
                    Ok(AuditEvent {
                        id: row.try_get("id").map_err(unavailable)?,
                        at: row.try_get("at").map_err(unavailable)?,
                        actor: row.try_get("actor").map_err(unavailable)?,
                        action: row.try_get("action").map_err(unavailable)?,
                        target: row.try_get("target").map_err(unavailable)?,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    })
                })
                .collect()
        })
    }
}
