//! Statements run straight on a locked SQLite connection handle.
//!
//! sqlx runs every SQLite statement on the connection's own worker thread,
//! one channel round trip (two thread switches) per statement. For the
//! ledger's group commit, a batch of hundreds of small statements, those
//! switches were most of the cost (`perf`: a third of the samples in
//! `finish_task_switch`, under flume). The ledger writer locks its
//! connection's handle for as long as it lives ([`Dedicated::hold`]) and
//! steps the statements here, on its own thread.
//!
//! Only what the ledger needs: integer and text parameters, integer and text
//! columns, the change count. The statements are prepared once per
//! connection and kept ([`Dedicated`]: a connection of its own, whose
//! statements are finalized before it closes); each is reset after use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};

use libsqlite3_sys as ffi;
use sqlx::ConnectOptions;

/// A parameter, bound as `?1`, `?2`, … (or `$1`, `$2`, … which SQLite
/// numbers the same way).
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
}

/// One column of a result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Int(i64),
    Text(String),
    Null,
}

impl Cell {
    pub fn int(&self) -> Result<i64, String> {
        match self {
            Cell::Int(v) => Ok(*v),
            other => Err(format!("expected an integer column, got {other:?}")),
        }
    }

    pub fn text(&self) -> Result<String, String> {
        match self {
            Cell::Text(v) => Ok(v.clone()),
            other => Err(format!("expected a text column, got {other:?}")),
        }
    }
}

/// A connection of its own (outside any pool, so nothing else ever runs
/// on it) and the statements prepared on it.
pub struct Dedicated {
    conn: sqlx::SqliteConnection,
    statements: Statements,
}

/// Prepared statements by their SQL text.
#[derive(Default)]
pub struct Statements(HashMap<&'static str, NonNull<ffi::sqlite3_stmt>>);

// SAFETY: the statements are only used while their connection's handle is
// locked by the ledger writer that owns the `Dedicated`, on its one thread.
unsafe impl Send for Statements {}

impl Drop for Dedicated {
    fn drop(&mut self) {
        // Before the connection closes (the fields drop after this).
        for (_, stmt) in self.statements.0.drain() {
            // SAFETY: each statement came from sqlite3_prepare_v3 on this
            // connection and is finalized once.
            unsafe {
                ffi::sqlite3_finalize(stmt.as_ptr());
            }
        }
    }
}

impl Dedicated {
    /// Opens a new connection with the options of `pool`'s, but:
    ///
    /// - `synchronous = FULL`: the ledger's commits are durable against a
    ///   power cut, not only a crash of the process — the WAL is synced
    ///   before COMMIT returns (the pool's `NORMAL` syncs only at
    ///   checkpoints). The group commit pays one sync per batch, and the
    ///   batches grow while it syncs.
    /// - a page cache of up to 16 MiB (SQLite's default is 2 MiB): the
    ///   ledger's indexes outgrow the default within a day of busy
    ///   traffic, and then every batch reads back pages it just wrote.
    pub async fn open(pool: &sqlx::SqlitePool) -> Result<Self, sqlx::Error> {
        let options = (*pool.connect_options())
            .clone()
            .pragma("synchronous", "FULL")
            .pragma("cache_size", "-16384");
        let conn = options.connect().await?;
        Ok(Dedicated {
            conn,
            statements: Statements::default(),
        })
    }

    /// Runs `work` with the handle locked for as long as it runs: a
    /// writer's whole life, on a thread of its own (the statements are
    /// synchronous and block the thread they run on).
    ///
    /// Meanwhile SQLite's automatic checkpoint is off on this connection
    /// (it would run inside a commit, with everyone of that batch
    /// waiting): the WAL's length is recorded after each commit instead,
    /// and the writer ends the WAL between batches
    /// ([`Direct::end_wal_if_long`]).
    pub async fn hold<R>(
        &mut self,
        work: impl AsyncFnOnce(&Direct<'_>) -> R,
    ) -> Result<R, sqlx::Error> {
        let mut handle = self.conn.lock_handle().await?;
        let hook = WalHook::register(handle.as_raw_handle());
        // SAFETY: the handle stays locked until `handle` drops, after `direct`.
        let direct = Direct {
            db: handle.as_raw_handle(),
            statements: RefCell::new(&mut self.statements),
            wal_frames: &hook.frames,
            wal_retry_at: std::cell::Cell::new(0),
        };
        Ok(work(&direct).await)
    }
}

/// The WAL hook of a locked connection, unregistered when dropped (also
/// on a panic), before the count it writes to is freed.
struct WalHook {
    db: NonNull<ffi::sqlite3>,
    /// Boxed: the hook keeps its address while registered.
    frames: Box<AtomicI32>,
}

impl WalHook {
    fn register(db: NonNull<ffi::sqlite3>) -> WalHook {
        let hook = WalHook {
            db,
            frames: Box::new(AtomicI32::new(0)),
        };
        // SAFETY: the handle is live and locked by the caller for longer
        // than `hook` lives; the argument points into the box, which is
        // freed only after `drop` below unregisters the hook.
        unsafe {
            ffi::sqlite3_wal_hook(
                db.as_ptr(),
                Some(record_wal_frames),
                std::ptr::from_ref::<AtomicI32>(&hook.frames)
                    .cast_mut()
                    .cast(),
            );
        }
        hook
    }
}

impl Drop for WalHook {
    fn drop(&mut self) {
        // SAFETY: as in `register`. No hook, and no automatic checkpoint,
        // from here on (the connection is closed after its writer).
        unsafe {
            ffi::sqlite3_wal_hook(self.db.as_ptr(), None, std::ptr::null_mut());
        }
    }
}

/// SQLite's WAL hook: after each commit, how many frames the WAL holds.
unsafe extern "C" fn record_wal_frames(
    frames_out: *mut c_void,
    _db: *mut ffi::sqlite3,
    _schema: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: registered with a pointer to a live AtomicI32 (`WalHook`).
    unsafe { (*frames_out.cast::<AtomicI32>()).store(frames, Ordering::Relaxed) };
    ffi::SQLITE_OK
}

/// The WAL length, in frames (a page each), past which the ledger writer
/// ends it: 16 MiB of 4 KiB pages. The background passes
/// (`store::checkpoint`) have copied most of it by then.
pub const WAL_RESTART_FRAMES: i32 = 4096;

/// A locked connection handle and its statements.
pub struct Direct<'c> {
    db: NonNull<ffi::sqlite3>,
    statements: RefCell<&'c mut Statements>,
    wal_frames: &'c AtomicI32,
    /// The WAL length at which [`Direct::end_wal_if_long`] tries again
    /// after a pass a reader kept from copying all of it (0: none).
    wal_retry_at: std::cell::Cell<i32>,
}

/// What [`Direct::end_wal_if_long`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalEnd {
    /// The WAL is short: nothing to do.
    Short,
    /// Another connection is checkpointing; try after the next commit.
    Busy,
    /// Copied `copied` of the WAL's `frames` frames. When that is all of
    /// them the next transaction starts the WAL over; when a reader kept
    /// the rest, the writer tries again once the WAL grew by another
    /// eighth of [`WAL_RESTART_FRAMES`] (not after every batch: each pass
    /// syncs the database).
    Copied { frames: i32, copied: i32 },
}

/// A statement in use, reset (its bindings cleared) when dropped.
struct Statement {
    stmt: NonNull<ffi::sqlite3_stmt>,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the statement is live (kept in the connection's cache).
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
    }
}

impl Direct<'_> {
    fn error(&self, what: &str) -> String {
        // SAFETY: the handle is live; sqlite3_errmsg returns a NUL-terminated
        // string owned by the connection, copied here at once.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr())) };
        format!("{what}: {}", message.to_string_lossy())
    }

    fn prepare(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Statement, String> {
        let mut statements = self.statements.borrow_mut();
        let stmt = match statements.0.get(sql) {
            Some(stmt) => *stmt,
            None => {
                let text = CString::new(sql).map_err(|_| "SQL text with a NUL byte".to_string())?;
                let mut raw = std::ptr::null_mut();
                // SAFETY: the handle is live and `text` outlives the call;
                // SQLite writes the new statement (or null) to `raw`.
                let rc = unsafe {
                    ffi::sqlite3_prepare_v3(
                        self.db.as_ptr(),
                        text.as_ptr(),
                        -1,
                        ffi::SQLITE_PREPARE_PERSISTENT,
                        &mut raw,
                        std::ptr::null_mut(),
                    )
                };
                if rc != ffi::SQLITE_OK {
                    if !raw.is_null() {
                        // SAFETY: a statement SQLite gave back, never used.
                        unsafe { ffi::sqlite3_finalize(raw) };
                    }
                    return Err(self.error("prepare"));
                }
                let stmt = NonNull::new(raw).ok_or("prepare: empty statement")?;
                statements.0.insert(sql, stmt);
                stmt
            }
        };
        let stmt = Statement { stmt };
        // SAFETY: the statement is live.
        let slots = unsafe { ffi::sqlite3_bind_parameter_count(stmt.stmt.as_ptr()) };
        for index in 1..=slots {
            // Each slot takes the parameter its name numbers (`?3`, `$3`):
            // SQLite gives `$n` names their slots in order of appearance.
            // SAFETY: the statement is live; the name is NUL-terminated or null.
            let name = unsafe { ffi::sqlite3_bind_parameter_name(stmt.stmt.as_ptr(), index) };
            let number = if name.is_null() {
                usize::try_from(index).ok()
            } else {
                // SAFETY: checked non-null above.
                let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
                name.get(1..).and_then(|n| n.parse::<usize>().ok())
            };
            let param = number
                .and_then(|n| n.checked_sub(1))
                .and_then(|n| params.get(n))
                .ok_or_else(|| format!("no parameter for slot {index} of {sql:?}"))?;
            // SAFETY: the statement is live; SQLITE_TRANSIENT makes SQLite copy
            // the text before the call returns.
            let rc = unsafe {
                match param {
                    Param::Int(v) => ffi::sqlite3_bind_int64(stmt.stmt.as_ptr(), index, *v),
                    Param::Text(t) | Param::OptText(Some(t)) => ffi::sqlite3_bind_text(
                        stmt.stmt.as_ptr(),
                        index,
                        t.as_ptr().cast(),
                        c_int::try_from(t.len()).map_err(|_| "text parameter too long")?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Param::OptText(None) => ffi::sqlite3_bind_null(stmt.stmt.as_ptr(), index),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.error("bind"));
            }
        }
        Ok(stmt)
    }

    /// Runs `sql` to the end; the rows it changed.
    pub fn execute(&self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, String> {
        let stmt = self.prepare(sql, params)?;
        loop {
            // SAFETY: the statement is live.
            match unsafe { ffi::sqlite3_step(stmt.stmt.as_ptr()) } {
                ffi::SQLITE_ROW => continue,
                ffi::SQLITE_DONE => break,
                _ => return Err(self.error("step")),
            }
        }
        drop(stmt);
        // SAFETY: the handle is live.
        let changes = unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) };
        Ok(u64::try_from(changes).unwrap_or(0))
    }

    /// Runs `sql`; every row it returns.
    pub fn query(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Vec<Cell>>, String> {
        let stmt = self.prepare(sql, params)?;
        let mut rows = Vec::new();
        loop {
            // SAFETY: the statement is live.
            match unsafe { ffi::sqlite3_step(stmt.stmt.as_ptr()) } {
                ffi::SQLITE_ROW => {}
                ffi::SQLITE_DONE => break,
                _ => return Err(self.error("step")),
            }
            // SAFETY: the statement has a current row; column text is copied
            // before the next step.
            let row = unsafe {
                let s = stmt.stmt.as_ptr();
                let columns = ffi::sqlite3_column_count(s);
                (0..columns)
                    .map(|i| match ffi::sqlite3_column_type(s, i) {
                        ffi::SQLITE_INTEGER => Cell::Int(ffi::sqlite3_column_int64(s, i)),
                        ffi::SQLITE_NULL => Cell::Null,
                        _ => {
                            let p = ffi::sqlite3_column_text(s, i);
                            let n = usize::try_from(ffi::sqlite3_column_bytes(s, i)).unwrap_or(0);
                            if p.is_null() {
                                Cell::Null
                            } else {
                                let bytes = std::slice::from_raw_parts(p, n);
                                Cell::Text(String::from_utf8_lossy(bytes).into_owned())
                            }
                        }
                    })
                    .collect()
            };
            rows.push(row);
        }
        Ok(rows)
    }

    /// When the WAL has grown past [`WAL_RESTART_FRAMES`], a PASSIVE
    /// checkpoint on this connection: it copies what the background passes
    /// left (the frames of the last few batches) and syncs the database,
    /// without waiting for anyone. Then, unless a reader still uses the
    /// WAL, this connection's next transaction writes it from the start.
    /// Only between transactions.
    pub fn end_wal_if_long(&self) -> Result<WalEnd, String> {
        let long = self.wal_frames.load(Ordering::Relaxed);
        if long < WAL_RESTART_FRAMES {
            // Started over (by whichever connection): no retry pending.
            self.wal_retry_at.set(0);
            return Ok(WalEnd::Short);
        }
        if long < self.wal_retry_at.get() {
            return Ok(WalEnd::Short);
        }
        let (mut frames, mut copied) = (0, 0);
        // SAFETY: the handle is live; "main" is NUL-terminated.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.db.as_ptr(),
                c"main".as_ptr(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                &mut frames,
                &mut copied,
            )
        };
        match rc {
            ffi::SQLITE_OK => {
                if copied == frames {
                    self.wal_frames.store(0, Ordering::Relaxed);
                    self.wal_retry_at.set(0);
                } else {
                    self.wal_retry_at
                        .set(frames.saturating_add(WAL_RESTART_FRAMES / 8));
                }
                Ok(WalEnd::Copied { frames, copied })
            }
            ffi::SQLITE_BUSY => Ok(WalEnd::Busy),
            _ => Err(self.error("checkpoint")),
        }
    }

    /// The database file's path, as SQLite resolved it (absolute).
    #[cfg(test)]
    pub fn filename(&self) -> Option<String> {
        // SAFETY: the handle is live; the name is NUL-terminated and owned
        // by the connection, copied here at once (null for a memory db).
        let name = unsafe { ffi::sqlite3_db_filename(self.db.as_ptr(), c"main".as_ptr()) };
        // SAFETY: checked non-null.
        (!name.is_null()).then(|| {
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// Whether a transaction is open on the connection (SQLite rolls some
    /// failures back by itself).
    pub fn in_transaction(&self) -> bool {
        // SAFETY: the handle is live.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) == 0 }
    }

    /// The first row, if any.
    pub fn query_row(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Option<Vec<Cell>>, String> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_bind_by_number_return_rows_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut conn = Dedicated::open(&pool).await.unwrap();
        let rows = conn
            .hold(async |d| {
                d.execute("CREATE TABLE t (a INTEGER, b TEXT)", &[])?;
                for (a, b) in [(1, Some("x")), (2, None)] {
                    // ?2 before ?1: bound by number, not by order.
                    d.execute(
                        "INSERT INTO t (b, a) VALUES (?2, ?1)",
                        &[Param::Int(a), Param::OptText(b)],
                    )?;
                }
                let changed = d.execute("UPDATE t SET a = a + ?1", &[Param::Int(10)])?;
                assert_eq!(changed, 2);
                // `$2` before `$1` in the text: still bound by its number.
                let none = d.execute(
                    "UPDATE t SET a = a WHERE b = $2 AND a = $1",
                    &[Param::Int(11), Param::Text("y")],
                )?;
                assert_eq!(none, 0);
                let one = d.execute(
                    "UPDATE t SET a = a WHERE b = $2 AND a = $1",
                    &[Param::Int(11), Param::Text("x")],
                )?;
                assert_eq!(one, 1);
                d.query("SELECT a, b FROM t ORDER BY a", &[])
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rows,
            [
                vec![Cell::Int(11), Cell::Text("x".into())],
                vec![Cell::Int(12), Cell::Null]
            ]
        );
        assert_eq!(conn.statements.0.len(), 5, "each text prepared once");
        let error = conn
            .hold(async |d| d.execute("INSERT INTO nowhere VALUES (1)", &[]))
            .await
            .unwrap()
            .unwrap_err();
        assert!(error.contains("no such table"), "{error}");
    }

    /// Fills table `t` with ?1 rows of 3,000 bytes: a page and more each.
    const FILL: &str = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
                        INSERT INTO t SELECT randomblob(3000) FROM n";

    /// Asserts that the writer copies all of its long WAL and that the
    /// next transaction writes the WAL from its start; the frames copied.
    fn ends_the_whole_wal(d: &Direct<'_>) -> Result<i32, String> {
        let WalEnd::Copied { frames, copied } = d.end_wal_if_long()? else {
            panic!("not ended");
        };
        assert_eq!(frames, copied, "all of it copied");
        d.execute("INSERT INTO t VALUES (x'00')", &[])?;
        let after = d.wal_frames.load(Ordering::Relaxed);
        assert!(after < 10, "the WAL started over: {after} frames");
        Ok(copied)
    }

    #[tokio::test]
    async fn the_writer_syncs_each_commit_and_ends_a_long_wal_between_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut conn = Dedicated::open(&pool).await.unwrap();
        conn.hold(async |d| {
            // FULL (2), whatever the pool's connections run with.
            assert_eq!(
                d.query_row("PRAGMA synchronous", &[])?,
                Some(vec![Cell::Int(2)])
            );
            d.execute("CREATE TABLE t (b BLOB)", &[])?;
            assert_eq!(d.end_wal_if_long()?, WalEnd::Short);
            // One commit of more pages than WAL_RESTART_FRAMES: SQLite's own
            // checkpoint would have run inside it; the hook only counts.
            d.execute(FILL, &[Param::Int(i64::from(WAL_RESTART_FRAMES) + 100)])?;
            let long = d.wal_frames.load(Ordering::Relaxed);
            assert!(long > WAL_RESTART_FRAMES, "{long} frames");
            assert_eq!(ends_the_whole_wal(d)?, long);
            Ok::<_, String>(())
        })
        .await
        .unwrap()
        .unwrap();
    }

    #[tokio::test]
    async fn a_wal_a_reader_holds_is_tried_again_only_after_it_grew() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE t (b BLOB)")
            .execute(&pool)
            .await
            .unwrap();
        // A reader whose snapshot predates what the writer adds.
        let mut reader = pool.begin().await.unwrap();
        sqlx::query("SELECT count(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        let mut conn = Dedicated::open(&pool).await.unwrap();
        let reader = conn
            .hold(async |d| {
                d.execute(FILL, &[Param::Int(i64::from(WAL_RESTART_FRAMES) + 100)])?;
                let Ok(WalEnd::Copied { frames, copied }) = d.end_wal_if_long() else {
                    panic!("no pass");
                };
                assert!(
                    copied < frames,
                    "the reader keeps the rest: {copied} of {frames}"
                );
                // A batch later the WAL is as long: no second pass (and sync) yet.
                d.execute("INSERT INTO t VALUES (x'00')", &[])?;
                assert_eq!(d.end_wal_if_long()?, WalEnd::Short);
                // Grown by an eighth: tried again.
                d.execute(FILL, &[Param::Int(i64::from(WAL_RESTART_FRAMES / 8) + 10)])?;
                assert!(matches!(d.end_wal_if_long()?, WalEnd::Copied { .. }));
                Ok::<_, String>(reader)
            })
            .await
            .unwrap()
            .unwrap();
        reader.commit().await.unwrap();
        conn.hold(async |d| {
            d.execute("INSERT INTO t VALUES (x'00')", &[])?;
            // The reader is gone: all of it copied, the WAL starts over.
            ends_the_whole_wal(d)?;
            Ok::<_, String>(())
        })
        .await
        .unwrap()
        .unwrap();
    }
}
