//! WAL checkpoints of the engine's SQLite database, off the request path.
//!
//! SQLite copies its write-ahead log back into the database file in a
//! checkpoint, and by default the connection whose commit takes the WAL
//! past 1,000 frames runs it inside that commit: two syncs and every page
//! the WAL touched, while every caller of that commit waits (the ledger's
//! p99 was made of them, docs/performance.md). Here the work is split:
//!
//! - [`keep_wal_short`], a task of the engine's, copies the WAL into the
//!   database with a PASSIVE checkpoint on a pool connection every
//!   [`PASS_EVERY`] while there is something to copy: it waits for nobody
//!   and nobody waits for it.
//! - A pass never catches up with a busy writer (by the time it has synced,
//!   more frames are in), so the WAL would never start over. The ledger
//!   writer, the one steady writer, ends it itself between its batches once
//!   it is long ([`super::sqlite_direct::Direct::end_wal_if_long`]): by then
//!   only the frames since the last pass are left to copy.
//!
//! Should the WAL still outgrow [`FORCE_FRAMES`] (a reader that never lets
//! go, a steady writer other than the ledger), a RESTART checkpoint makes
//! writers wait until it is all copied, and says so in the log.

use std::time::Duration;

use sqlx::SqlitePool;

use super::Database;

/// How often a pass runs while the WAL has frames to copy.
pub const PASS_EVERY: Duration = Duration::from_millis(50);

/// How often a pass runs once a pass found nothing to copy.
pub const IDLE_PASS_EVERY: Duration = Duration::from_secs(1);

/// The WAL length (frames of a page each) past which a pass makes writers
/// wait for a whole checkpoint: 64 MiB of 4 KiB pages.
pub const FORCE_FRAMES: i64 = 4 * super::sqlite_direct::WAL_RESTART_FRAMES as i64;

/// What one pass found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Frames in the WAL.
    pub frames: i64,
    /// Frames of it now in the database file.
    pub copied: i64,
    /// Whether writers were made to wait for all of it (RESTART).
    pub forced: bool,
}

/// Checkpoints `db`'s WAL until its pool is closed (nothing to do on
/// PostgreSQL).
pub async fn keep_wal_short(db: Database) {
    let Database::Sqlite(pool) = db else {
        return;
    };
    let mut copied_before = 0;
    loop {
        let wait = match pass(&pool, FORCE_FRAMES).await {
            // New frames since the last pass: more are likely coming.
            Ok(p) if p.copied != copied_before => {
                copied_before = p.copied;
                PASS_EVERY
            }
            Ok(_) => IDLE_PASS_EVERY,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "SQLite checkpoint failed; trying again");
                IDLE_PASS_EVERY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One PASSIVE checkpoint, and a RESTART one when the WAL is longer than
/// `force_frames` ([`FORCE_FRAMES`]).
pub async fn pass(pool: &SqlitePool, force_frames: i64) -> Result<Pass, sqlx::Error> {
    let (_, frames, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    if frames < force_frames {
        return Ok(Pass {
            frames,
            copied,
            forced: false,
        });
    }
    tracing::warn!(
        frames,
        "the SQLite WAL outgrew its background checkpoints; writers wait for a whole one"
    );
    let (_, frames, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
        .fetch_one(pool)
        .await?;
    Ok(Pass {
        frames,
        copied,
        forced: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    /// A WAL database whose connections never checkpoint on their own.
    async fn pool(dir: &std::path::Path) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE t (b BLOB)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    async fn write_pages(pool: &SqlitePool, pages: i64) {
        sqlx::query(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $1) \
             INSERT INTO t SELECT randomblob(3000) FROM n",
        )
        .bind(pages)
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_pass_copies_the_wal_and_forces_only_a_long_one() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        write_pages(&pool, 50).await;
        let first = pass(&pool, 1_000).await.unwrap();
        assert!(first.frames >= 50, "{first:?}");
        assert_eq!(first.copied, first.frames, "nobody reads: all of it copied");
        assert!(!first.forced);
        // Nothing new: nothing more copied.
        assert_eq!(pass(&pool, 1_000).await.unwrap(), first);

        write_pages(&pool, 200).await;
        let forced = pass(&pool, 100).await.unwrap();
        assert!(
            forced.forced && forced.copied == forced.frames,
            "{forced:?}"
        );
        // RESTART: the next write starts the WAL over.
        write_pages(&pool, 1).await;
        let after = pass(&pool, 1_000).await.unwrap();
        assert!(after.frames < 10, "the WAL started over: {after:?}");
    }

    #[tokio::test]
    async fn the_task_stops_when_the_pool_closes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        let task = tokio::spawn(keep_wal_short(Database::Sqlite(pool.clone())));
        write_pages(&pool, 20).await;
        pool.close().await;
        tokio::time::timeout(IDLE_PASS_EVERY * 3, task)
            .await
            .expect("the task ended")
            .unwrap();
    }
}
