//! The billing ledger's tables (`billing_*`): accounts with their running
//! sums, open holds, entries and settlements. Only storage: when to hold,
//! what to post and who pays is `billing`'s business.
//!
//! Every write is a batch of [`Op`]s applied in one transaction, so the
//! group commit of `billing::writer` costs one commit for many calls. Each
//! operation is a conditional statement that either applies or reports why
//! not ([`Applied`]); only a database failure fails the batch, and then
//! none of it applied. On SQLite the engine steps the statements itself
//! ([`SqliteWriter`]); on PostgreSQL a batch is one call of the
//! `kiln_ledger_apply` function, one round trip ([`PostgresLedger`]).

use sqlx::Row;

use super::sqlite_direct::{Dedicated, Direct, Param, WalEnd};
use super::{DataError, Database};

/// One movement, as the writer queues it. Amounts are micro-units. Its
/// JSON form is what PostgreSQL's `kiln_ledger_apply` reads.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Set `amount` aside on `account` for the call `request_key`, when
    /// `balance - pending - held >= amount`.
    Hold {
        account: String,
        request_key: String,
        amount: i64,
        plugin: String,
        operation: String,
        now_ms: i64,
        expires_at: i64,
    },
    /// Turn the hold into a charge of `amount` (at most the hold; the
    /// rest is released).
    Post {
        request_key: String,
        amount: i64,
        reason: Option<String>,
        request_id: String,
        now_ms: i64,
    },
    /// Release the hold.
    Void { request_key: String },
    /// Add (`credit`) or take (`debit`) money; the account is created on
    /// its first credit. With `key`, once: a retry under the same key
    /// (from this engine or another) finds the first entry and changes
    /// nothing.
    Adjust {
        account: String,
        credit: bool,
        amount: i64,
        reason: Option<String>,
        key: Option<String>,
        now_ms: i64,
    },
    /// Create `account` with nothing in it.
    Open { account: String, now_ms: i64 },
    /// Release every hold that expired by `now_ms`.
    Expire { now_ms: i64 },
}

/// What one [`Op`] did. Its JSON form (`{"r": "posted", "v": {"entry": 7,
/// "amount": 250}}`, `{"r": "held"}`) is what PostgreSQL's
/// `kiln_ledger_apply` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "r", content = "v", rename_all = "snake_case")]
pub enum Applied {
    Held,
    /// A charge for this request key is already in the ledger.
    AlreadyCharged,
    /// A hold for this request key is open (the same request in flight).
    InFlight,
    /// Not enough: what the account could spend.
    Insufficient {
        available: i64,
    },
    NoAccount,
    /// The charge that went into the ledger (entry id, amount).
    Posted {
        entry: i64,
        amount: i64,
    },
    /// No open hold had this key (expired, or never placed).
    NotHeld,
    Voided,
    /// A credit or debit entry; the account's new balance.
    Adjusted {
        entry: i64,
        balance: i64,
    },
    /// A debit larger than what the account could spend.
    Overdrawn {
        available: i64,
    },
    /// A credit or debit under this key is in the ledger already: that
    /// entry and its amount, nothing changed.
    AlreadyApplied {
        entry: i64,
        amount: i64,
    },
    Opened,
    /// The account existed already.
    Exists,
    Expired(u64),
}

/// An account's sums.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub account: String,
    /// Credits minus debits minus settled charges.
    pub balance: i64,
    /// Charges posted and not yet settled.
    pub pending: i64,
    /// Open holds.
    pub held: i64,
    /// What a call may hold now: `balance - pending - held`.
    pub available: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    pub account: String,
    pub kind: String,
    pub amount: i64,
    pub plugin: Option<String>,
    pub operation: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub created_at: i64,
    pub settlement: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Settlement {
    pub id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub entries: i64,
    pub amount: i64,
}

fn unavailable(e: sqlx::Error) -> DataError {
    DataError::Unavailable(e.to_string())
}

/// What a failed commit says: the database may or may not have applied it.
const UNCERTAIN: &str = "the commit's outcome is unknown";

fn uncertain(e: sqlx::Error) -> DataError {
    DataError::Unavailable(format!("{UNCERTAIN}: {e}"))
}

/// Whether `e` is a commit whose outcome is unknown: running the batch
/// again could apply it twice (a credit counted twice), so it is not
/// retried. Any other failure rolled the whole batch back.
pub fn is_uncertain(e: &DataError) -> bool {
    matches!(e, DataError::Unavailable(m) if m.starts_with(UNCERTAIN))
}

/// Runs `$body` (which uses the transaction `$tx`) on either pool, once
/// per dialect, with the SQL text shared: `$1` placeholders suit both.
macro_rules! in_transaction {
    ($db:expr, $tx:ident => $body:expr) => {
        on_pool!($db, pool => {
            let mut $tx = pool.begin().await.map_err(unavailable)?;
            let out = $body;
            $tx.commit().await.map_err(uncertain)?;
            out
        })
    };
}

/// A hold's gate: the amount is set aside only when the account can afford
/// it and no charge under this request key exists.
const HOLD_GATE: &str = "UPDATE billing_accounts SET held = held + $2 \
     WHERE account = $1 AND balance - pending - held >= $2 \
     AND NOT EXISTS (SELECT 1 FROM billing_entries WHERE request_key = $3)";

// The statements of a movement on SQLite (`sqlite_direct` binds `$n` by
// its number). PostgreSQL runs the same ones, in the same order, inside
// `kiln_ledger_apply` (migrations/postgres/0008_billing_apply.sql): a
// change here is a change there, and
// tests/e2e/billing.rs::the_ledger_answers_alike_on_sqlite_and_postgres
// compares the two.
const ADJUST_BALANCE: &str = "UPDATE billing_accounts SET balance = balance + $2 WHERE account = $1 AND ($3 OR balance - pending - held >= $4) RETURNING balance";
const AVAILABLE: &str =
    "SELECT balance - pending - held AS available FROM billing_accounts WHERE account = $1";
const ENTRY_OF_KEY: &str = "SELECT id, amount FROM billing_entries WHERE request_key = $1";
const EXPIRE_HOLDS: &str =
    "DELETE FROM billing_holds WHERE expires_at <= $1 RETURNING account, amount";
const INSERT_ADJUSTMENT: &str = "INSERT INTO billing_entries (account, kind, amount, reason, request_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_key) DO NOTHING RETURNING id";
const INSERT_CHARGE: &str = "INSERT INTO billing_entries (account, kind, amount, plugin, operation, reason, request_key, request_id, created_at) VALUES ($1, 'charge', $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_key) DO NOTHING RETURNING id";
const INSERT_HOLD: &str = "INSERT INTO billing_holds (request_key, account, amount, plugin, operation, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (request_key) DO NOTHING";
const OPEN_ACCOUNT: &str = "INSERT INTO billing_accounts (account, created_at) VALUES ($1, $2) ON CONFLICT (account) DO NOTHING";
const POST_HELD: &str =
    "UPDATE billing_accounts SET held = held - $2, pending = pending + $3 WHERE account = $1";
const RELEASE_HELD: &str = "UPDATE billing_accounts SET held = held - $2 WHERE account = $1";
const TAKE_HOLD: &str =
    "DELETE FROM billing_holds WHERE request_key = $1 RETURNING account, amount";
const TAKE_HOLD_TO_POST: &str =
    "DELETE FROM billing_holds WHERE request_key = $1 RETURNING account, amount, plugin, operation";

/// The request key a keyed credit or debit is made once under. An account
/// always has a `:`, so this never meets a hold's "<account> <key>".
fn adjustment_key(credit: bool, account: &str, key: Option<&str>) -> Option<String> {
    let kind = if credit { "credit" } else { "debit" };
    key.map(|k| format!("{kind} {account} {k}"))
}

const ACCOUNT_COLUMNS: &str = "account, balance, pending, held, created_at";

fn account_of<R: Row>(row: &R) -> Result<Account, DataError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let balance: i64 = row.try_get("balance").map_err(unavailable)?;
    let pending: i64 = row.try_get("pending").map_err(unavailable)?;
    let held: i64 = row.try_get("held").map_err(unavailable)?;
    Ok(Account {
        account: row.try_get("account").map_err(unavailable)?,
        balance,
        pending,
        held,
        available: balance - pending - held,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

const ENTRY_COLUMNS: &str =
    "id, account, kind, amount, plugin, operation, reason, request_id, created_at, settlement";

fn entry_of<R: Row>(row: &R) -> Result<Entry, DataError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Entry {
        id: row.try_get("id").map_err(unavailable)?,
        account: row.try_get("account").map_err(unavailable)?,
        kind: row.try_get("kind").map_err(unavailable)?,
        amount: row.try_get("amount").map_err(unavailable)?,
        plugin: row.try_get("plugin").map_err(unavailable)?,
        operation: row.try_get("operation").map_err(unavailable)?,
        reason: row.try_get("reason").map_err(unavailable)?,
        request_id: row.try_get("request_id").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        settlement: row.try_get("settlement").map_err(unavailable)?,
    })
}

#[derive(Clone)]
pub struct LedgerStore {
    db: Database,
}

impl LedgerStore {
    pub fn new(db: Database) -> Self {
        LedgerStore { db }
    }

    /// Where the movements go: the one place that tells the writer which
    /// kind of database it writes to.
    pub fn writer(&self) -> LedgerWriter {
        match &self.db {
            Database::Sqlite(pool) => LedgerWriter::Sqlite(SqliteLedger { pool: pool.clone() }),
            Database::Postgres(pool) => {
                LedgerWriter::Postgres(PostgresLedger { pool: pool.clone() })
            }
        }
    }

    /// Applies `ops` in order in one transaction: all of them or, when
    /// the database fails, none. (On SQLite, on a connection opened for
    /// the purpose; the engine's writer keeps one, [`SqliteLedger::writer`].)
    pub async fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, DataError> {
        match self.writer() {
            LedgerWriter::Sqlite(sqlite) => {
                sqlite
                    .writer(async |writer| writer.apply(ops, |_, _| {}).0)
                    .await?
            }
            LedgerWriter::Postgres(postgres) => postgres.apply(ops).await,
        }
    }

    pub async fn account(&self, account: &str) -> Result<Option<Account>, DataError> {
        on_pool!(&self.db, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE account = $1"
            )))
            .bind(account)
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(account_of).transpose()
        })
    }

    pub async fn accounts(&self, limit: u32) -> Result<Vec<Account>, DataError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM billing_accounts ORDER BY account LIMIT $1"
            )))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(account_of).collect()
        })
    }

    /// An account's newest entries, newest first (ids before `before`).
    pub async fn entries(
        &self,
        account: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Entry>, DataError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ENTRY_COLUMNS} FROM billing_entries \
                 WHERE account = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            )))
            .bind(account)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(entry_of).collect()
        })
    }

    /// The sums recomputed from the entries and holds alone, to check the
    /// running sums against: (balance, pending, held).
    pub async fn derived(&self, account: &str) -> Result<(i64, i64, i64), DataError> {
        on_pool!(&self.db, pool => {
            let row = sqlx::query(
                "SELECT \
                   CAST(COALESCE(SUM(CASE WHEN kind = 'credit' THEN amount \
                                     WHEN kind = 'debit' THEN -amount \
                                     WHEN settlement IS NOT NULL THEN -amount ELSE 0 END), 0) AS BIGINT) AS balance, \
                   CAST(COALESCE(SUM(CASE WHEN kind = 'charge' AND settlement IS NULL THEN amount ELSE 0 END), 0) AS BIGINT) AS pending, \
                   CAST((SELECT COALESCE(SUM(amount), 0) FROM billing_holds WHERE account = $1) AS BIGINT) AS held \
                 FROM billing_entries WHERE account = $1",
            )
            .bind(account)
            .fetch_one(pool)
            .await
            .map_err(unavailable)?;
            Ok((
                row.try_get::<i64, _>("balance").map_err(unavailable)?,
                row.try_get::<i64, _>("pending").map_err(unavailable)?,
                row.try_get::<i64, _>("held").map_err(unavailable)?,
            ))
        })
    }

    pub async fn settlements(&self, limit: u32) -> Result<Vec<Settlement>, DataError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT id, started_at, finished_at, entries, amount FROM billing_settlements \
                 ORDER BY started_at DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    Ok(Settlement {
                        id: row.try_get("id").map_err(unavailable)?,
                        started_at: row.try_get("started_at").map_err(unavailable)?,
                        finished_at: row.try_get("finished_at").map_err(unavailable)?,
                        entries: row.try_get("entries").map_err(unavailable)?,
                        amount: row.try_get("amount").map_err(unavailable)?,
                    })
                })
                .collect()
        })
    }

    /// Starts settlement `id`.
    pub async fn begin_settlement(&self, id: &str, now_ms: i64) -> Result<(), DataError> {
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO billing_settlements (id, started_at) VALUES ($1, $2)",
        )
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable))
    }

    /// Deducts up to `batch` unsettled charges from their accounts and
    /// marks them with `settlement`, in one transaction; how many and how
    /// much (0 when none were left).
    pub async fn settle_batch(
        &self,
        settlement: &str,
        batch: u32,
    ) -> Result<(i64, i64), DataError> {
        let for_update = match self.db {
            Database::Postgres(_) => " FOR UPDATE",
            Database::Sqlite(_) => "",
        };
        Ok(in_transaction!(&self.db, tx => {
            // On PostgreSQL the rows are locked: a second settler waits,
            // then finds them settled, so nothing is deducted twice even
            // without the settlement lock. (SQLite has one writer: a second
            // one's stale read fails its write.)
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, account, amount FROM billing_entries \
                 WHERE settlement IS NULL AND kind = 'charge' ORDER BY id LIMIT $1{for_update}"
            )))
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            let mut by_account: std::collections::BTreeMap<String, i64> = Default::default();
            let (mut first, mut last, mut total) = (i64::MAX, i64::MIN, 0i64);
            for row in &rows {
                let id: i64 = row.try_get("id").map_err(unavailable)?;
                let account: String = row.try_get("account").map_err(unavailable)?;
                let amount: i64 = row.try_get("amount").map_err(unavailable)?;
                *by_account.entry(account).or_default() += amount;
                first = first.min(id);
                last = last.max(id);
                total += amount;
            }
            // Accounts in one order, so two settlements never deadlock.
            for (account, amount) in &by_account {
                sqlx::query(
                    "UPDATE billing_accounts SET balance = balance - $2, pending = pending - $2 \
                     WHERE account = $1",
                )
                .bind(account)
                .bind(amount)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            if !rows.is_empty() {
                sqlx::query(
                    "UPDATE billing_entries SET settlement = $1 \
                     WHERE settlement IS NULL AND kind = 'charge' AND id >= $2 AND id <= $3",
                )
                .bind(settlement)
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                sqlx::query(
                    "UPDATE billing_settlements SET entries = entries + $2, amount = amount + $3 WHERE id = $1",
                )
                .bind(settlement)
                .bind(rows.len() as i64)
                .bind(total)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            (rows.len() as i64, total)
        }))
    }

    pub async fn finish_settlement(&self, id: &str, now_ms: i64) -> Result<(), DataError> {
        on_pool!(&self.db, pool => sqlx::query(
            "UPDATE billing_settlements SET finished_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable))
    }
}

/// The ledger's writing side, by database ([`LedgerStore::writer`]).
pub enum LedgerWriter {
    Sqlite(SqliteLedger),
    Postgres(PostgresLedger),
}

/// The ledger on PostgreSQL, where several engines write.
#[derive(Clone)]
pub struct PostgresLedger {
    pool: sqlx::PgPool,
}

impl PostgresLedger {
    /// [`LedgerStore::apply`] on PostgreSQL: the whole batch in one round
    /// trip, to `kiln_ledger_apply` (migrations/postgres/0008_billing_apply.sql,
    /// the same rules as [`apply_one_sqlite`]), in a transaction of its own.
    /// The answers are read before COMMIT, so only the commit itself can
    /// leave the outcome unknown.
    pub async fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, DataError> {
        let ops_json = serde_json::to_string(ops)
            .map_err(|e| DataError::Unavailable(format!("cannot encode the batch: {e}")))?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let answers: String = sqlx::query_scalar("SELECT kiln_ledger_apply($1::jsonb)::text")
            .bind(ops_json)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let answers: Vec<Applied> = serde_json::from_str(&answers).map_err(|e| {
            DataError::Unavailable(format!("kiln_ledger_apply answered {answers:?}: {e}"))
        })?;
        if answers.len() != ops.len() {
            return Err(DataError::Unavailable(format!(
                "kiln_ledger_apply answered {} times for {} movements",
                answers.len(),
                ops.len()
            )));
        }
        tx.commit().await.map_err(uncertain)?;
        Ok(answers)
    }
}

/// The ledger on SQLite, where this process is the only writer.
#[derive(Clone)]
pub struct SqliteLedger {
    pool: sqlx::SqlitePool,
}

impl SqliteLedger {
    /// Opens a connection of the writer's own (outside the pool) and runs
    /// `work` with it, its handle locked for as long as `work` runs. The
    /// statements block the thread they run on: meant for a thread of its
    /// own (`billing::writer`).
    pub async fn writer<R>(
        &self,
        work: impl AsyncFnOnce(&SqliteWriter<'_, '_>) -> R,
    ) -> Result<R, DataError> {
        let mut conn = Dedicated::open(&self.pool).await.map_err(unavailable)?;
        conn.hold(async |direct| work(&SqliteWriter(direct)).await)
            .await
            .map_err(unavailable)
    }
}

/// The SQLite ledger writer's connection, locked ([`SqliteLedger::writer`]).
pub struct SqliteWriter<'a, 'c>(&'a Direct<'c>);

impl SqliteWriter<'_, '_> {
    /// [`LedgerStore::apply`] on SQLite: the same statements as on
    /// PostgreSQL, stepped on the writer's own locked connection in one
    /// immediate transaction ([`super::sqlite_direct`]), so a batch costs
    /// no thread switch and no parse per statement. SQLite has one writer
    /// at a time, so the checks and the writes of a batch cannot
    /// interleave with another process's.
    ///
    /// `ran` hears each operation's answer as soon as its statements ran,
    /// before COMMIT: what it will have done if the batch commits. Returns
    /// the answers, and whether the connection was left unusable (a failed
    /// rollback).
    pub fn apply(
        &self,
        ops: &[Op],
        mut ran: impl FnMut(usize, &Applied),
    ) -> (Result<Vec<Applied>, DataError>, bool) {
        let direct = self.0;
        if let Err(e) = direct.execute("BEGIN IMMEDIATE", &[]) {
            return (Err(DataError::Unavailable(e)), false);
        }
        let applied = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let applied = apply_one_sqlite(direct, op)?;
                ran(i, &applied);
                Ok(applied)
            })
            .collect::<Result<Vec<_>, String>>();
        let failure = match applied {
            Ok(applied) => match commit(direct) {
                Ok(_) => return (Ok(applied), false),
                Err(e) => e,
            },
            Err(e) => e,
        };
        // A local database says for certain: after a rollback that worked,
        // nothing of the batch applied and it may be retried; only when the
        // rollback fails too is the outcome unknown.
        if !direct.in_transaction() {
            return (Err(DataError::Unavailable(failure)), false);
        }
        match direct.execute("ROLLBACK", &[]) {
            Ok(_) => (Err(DataError::Unavailable(failure)), false),
            Err(e) => (
                Err(DataError::Unavailable(format!(
                    "{UNCERTAIN}: {failure}; rollback: {e}"
                ))),
                true,
            ),
        }
    }

    /// Between batches: ends a long WAL ([`Direct::end_wal_if_long`]).
    pub fn end_wal_if_long(&self) -> Result<WalEnd, String> {
        self.0.end_wal_if_long()
    }
}

/// Tests make the next commits to one database file fail or wait
/// ([`fail_next_commits`], [`pause_next_commits`]); other tests'
/// databases are left alone.
#[cfg(test)]
static COMMIT_FAULTS: std::sync::Mutex<Vec<CommitFault>> = std::sync::Mutex::new(Vec::new());

/// One database file's armed fault (tests run side by side, each on its
/// own file).
#[cfg(test)]
struct CommitFault {
    db: std::path::PathBuf,
    left: u32,
    /// `None`: the commit fails; else it waits this long first.
    pause: Option<std::time::Duration>,
}

/// Makes the next `n` ledger commits to the SQLite file `db` fail (after
/// their statements ran), as a full disk or an I/O error would.
#[cfg(test)]
pub fn fail_next_commits(db: &std::path::Path, n: u32) {
    arm_commit_fault(db, n, None);
}

/// Makes the next `n` ledger commits to the SQLite file `db` wait `pause`
/// first, as a slow disk would.
#[cfg(test)]
pub fn pause_next_commits(db: &std::path::Path, n: u32, pause: std::time::Duration) {
    arm_commit_fault(db, n, Some(pause));
}

#[cfg(test)]
fn arm_commit_fault(db: &std::path::Path, left: u32, pause: Option<std::time::Duration>) {
    let db = db.canonicalize().unwrap_or_else(|_| db.to_path_buf());
    let mut faults = COMMIT_FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    faults.retain(|f| f.db != db);
    faults.push(CommitFault { db, left, pause });
}

fn commit(direct: &Direct<'_>) -> Result<u64, String> {
    #[cfg(test)]
    {
        let mut armed = COMMIT_FAULTS.lock().unwrap_or_else(|e| e.into_inner());
        let file = direct.filename();
        let mine = armed.iter_mut().find(|fault| {
            file.as_deref()
                .is_some_and(|f| std::path::Path::new(f) == fault.db)
        });
        if let Some(fault) = mine
            && fault.left > 0
        {
            fault.left -= 1;
            match fault.pause {
                None => return Err("disk I/O error (injected by a test)".into()),
                Some(pause) => {
                    drop(armed);
                    std::thread::sleep(pause);
                }
            }
        }
    }
    direct.execute("COMMIT", &[])
}

/// What `account` may spend, or `None` when it does not exist.
fn available_sqlite(direct: &Direct<'_>, account: &str) -> Result<Option<i64>, String> {
    direct
        .query_row(AVAILABLE, &[Param::Text(account)])?
        .map(|row| row[0].int())
        .transpose()
}

fn release_held_sqlite(direct: &Direct<'_>, account: &str, amount: i64) -> Result<(), String> {
    direct.execute(RELEASE_HELD, &[Param::Text(account), Param::Int(amount)])?;
    Ok(())
}

fn entry_of_key(direct: &Direct<'_>, request_key: &str) -> Result<Option<i64>, String> {
    direct
        .query_row(ENTRY_OF_KEY, &[Param::Text(request_key)])?
        .map(|row| row[0].int())
        .transpose()
}

fn apply_one_sqlite(direct: &Direct<'_>, op: &Op) -> Result<Applied, String> {
    use Param::{Int, OptText, Text};
    Ok(match op {
        Op::Hold {
            account,
            request_key,
            amount,
            plugin,
            operation,
            now_ms,
            expires_at,
        } => {
            let debited =
                direct.execute(HOLD_GATE, &[Text(account), Int(*amount), Text(request_key)])?;
            if debited == 0 {
                if entry_of_key(direct, request_key)?.is_some() {
                    return Ok(Applied::AlreadyCharged);
                }
                return Ok(match available_sqlite(direct, account)? {
                    Some(available) => Applied::Insufficient { available },
                    None => Applied::NoAccount,
                });
            }
            let inserted = direct.execute(
                INSERT_HOLD,
                &[
                    Text(request_key),
                    Text(account),
                    Int(*amount),
                    Text(plugin),
                    Text(operation),
                    Int(*now_ms),
                    Int(*expires_at),
                ],
            )?;
            if inserted == 0 {
                release_held_sqlite(direct, account, *amount)?;
                Applied::InFlight
            } else {
                Applied::Held
            }
        }
        Op::Post {
            request_key,
            amount,
            reason,
            request_id,
            now_ms,
        } => {
            let Some(hold) = direct.query_row(TAKE_HOLD_TO_POST, &[Text(request_key)])? else {
                return Ok(Applied::NotHeld);
            };
            let account = hold[0].text()?;
            let held = hold[1].int()?;
            let plugin = hold[2].text()?;
            let operation = hold[3].text()?;
            let amount = (*amount).clamp(0, held);
            let entry = if amount > 0 {
                direct
                    .query_row(
                        INSERT_CHARGE,
                        &[
                            Text(&account),
                            Int(amount),
                            Text(&plugin),
                            Text(&operation),
                            OptText(reason.as_deref()),
                            Text(request_key),
                            Text(request_id),
                            Int(*now_ms),
                        ],
                    )?
                    .map(|row| row[0].int())
                    .transpose()?
            } else {
                None
            };
            let charged = if entry.is_some() { amount } else { 0 };
            direct.execute(POST_HELD, &[Text(&account), Int(held), Int(charged)])?;
            match entry {
                Some(entry) => Applied::Posted { entry, amount },
                None if amount == 0 => Applied::Voided,
                None => Applied::AlreadyCharged,
            }
        }
        Op::Void { request_key } => match direct.query_row(TAKE_HOLD, &[Text(request_key)])? {
            None => Applied::NotHeld,
            Some(hold) => {
                release_held_sqlite(direct, &hold[0].text()?, hold[1].int()?)?;
                Applied::Voided
            }
        },
        Op::Open { account, now_ms } => {
            let created = direct.execute(OPEN_ACCOUNT, &[Text(account), Int(*now_ms)])?;
            if created == 0 {
                Applied::Exists
            } else {
                Applied::Opened
            }
        }
        Op::Adjust {
            account,
            credit,
            amount,
            reason,
            key,
            now_ms,
        } => {
            let request_key = adjustment_key(*credit, account, key.as_deref());
            if let Some(request_key) = &request_key
                && let Some(first) = direct.query_row(ENTRY_OF_KEY, &[Text(request_key)])?
            {
                return Ok(Applied::AlreadyApplied {
                    entry: first[0].int()?,
                    amount: first[1].int()?,
                });
            }
            if *credit {
                direct.execute(OPEN_ACCOUNT, &[Text(account), Int(*now_ms)])?;
            }
            let sign: i64 = if *credit { 1 } else { -1 };
            let changed = direct.query_row(
                ADJUST_BALANCE,
                &[
                    Text(account),
                    Int(sign * amount),
                    Int(i64::from(*credit)),
                    Int(*amount),
                ],
            )?;
            let Some(row) = changed else {
                return Ok(match available_sqlite(direct, account)? {
                    None => Applied::NoAccount,
                    Some(available) => Applied::Overdrawn { available },
                });
            };
            let balance = row[0].int()?;
            // One writer at a time: the key was looked up in this transaction.
            let entry = direct
                .query_row(
                    INSERT_ADJUSTMENT,
                    &[
                        Text(account),
                        Text(if *credit { "credit" } else { "debit" }),
                        Int(*amount),
                        OptText(reason.as_deref()),
                        OptText(request_key.as_deref()),
                        Int(*now_ms),
                    ],
                )?
                .ok_or("INSERT … RETURNING gave no row")?;
            Applied::Adjusted {
                entry: entry[0].int()?,
                balance,
            }
        }
        Op::Expire { now_ms } => {
            let expired = direct.query(EXPIRE_HOLDS, &[Int(*now_ms)])?;
            for hold in &expired {
                release_held_sqlite(direct, &hold[0].text()?, hold[1].int()?)?;
            }
            Applied::Expired(expired.len() as u64)
        }
    })
}

/// Held while this process settles: on PostgreSQL a session advisory lock
/// (released when its connection closes, so a crashed engine never keeps
/// it); on SQLite, where one process owns the file, a lock in process.
pub struct SettleLock {
    postgres: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    _sqlite: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The advisory lock's key: "kilnsett" in ASCII.
const SETTLE_LOCK_KEY: i64 = 0x6b69_6c6e_7365_7474;

static SQLITE_SETTLE: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

impl LedgerStore {
    /// The settlement lock, or `None` when another settler holds it.
    pub async fn try_settle_lock(&self) -> Result<Option<SettleLock>, DataError> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(unavailable)?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(SETTLE_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(unavailable)?;
                Ok(got.then_some(SettleLock {
                    postgres: Some(conn),
                    _sqlite: None,
                }))
            }
            Database::Sqlite(_) => {
                Ok(SQLITE_SETTLE
                    .clone()
                    .try_lock_owned()
                    .ok()
                    .map(|guard| SettleLock {
                        postgres: None,
                        _sqlite: Some(guard),
                    }))
            }
        }
    }
}

impl SettleLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.postgres.take() {
            let released = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SETTLE_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            if released.is_err() {
                // Closing the connection releases the lock with it.
                drop(conn.detach());
            }
        }
    }
}

impl Drop for SettleLock {
    /// Not released (the settler failed or was cancelled): the connection
    /// is closed rather than returned to the pool still holding the lock.
    fn drop(&mut self) {
        if let Some(conn) = self.postgres.take() {
            drop(conn.detach());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, LedgerStore) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::connect(&crate::store::DatabaseConfig::default(), tmp.path())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (tmp, LedgerStore::new(db))
    }

    fn hold(key: &str, amount: i64, expires_at: i64) -> Op {
        Op::Hold {
            account: "key:a".into(),
            request_key: key.into(),
            amount,
            plugin: "p".into(),
            operation: "GET /x".into(),
            now_ms: 1,
            expires_at,
        }
    }

    fn post(key: &str, amount: i64) -> Op {
        Op::Post {
            request_key: key.into(),
            amount,
            reason: None,
            request_id: "r".into(),
            now_ms: 2,
        }
    }

    #[tokio::test]
    async fn holds_open_before_the_holds_table_was_rekeyed_survive_it() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::connect(&crate::store::DatabaseConfig::default(), tmp.path())
            .await
            .unwrap();
        let Database::Sqlite(pool) = &db else {
            unreachable!("the default database is SQLite")
        };
        // The schema before 0006_billing_holds.sql, with a hold in flight.
        super::super::SQLITE_MIGRATIONS
            .run_to(5, pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO billing_accounts (account, balance, held, created_at) VALUES ('key:a', 100, 30, 0); \
             INSERT INTO billing_entries (account, kind, amount, created_at) VALUES ('key:a', 'credit', 100, 0); \
             INSERT INTO billing_holds VALUES ('key:a r1', 'key:a', 30, 'p', 'GET /x', 1, 9)",
        )
        .execute(pool)
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let table: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'billing_holds'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(table.contains("WITHOUT ROWID"), "{table}");
        let indexes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'billing_holds'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(indexes, 0, "no index beside the key");
        let s = LedgerStore::new(db);
        assert_eq!(s.derived("key:a").await.unwrap(), (100, 0, 30));
        // The hold is still the call's: its post finds it.
        assert_eq!(
            s.apply(&[post("key:a r1", 10)]).await.unwrap(),
            [Applied::Posted {
                entry: 2,
                amount: 10
            }]
        );
        let a = s.account("key:a").await.unwrap().unwrap();
        assert_eq!((a.pending, a.held, a.available), (10, 0, 90));
    }

    #[test]
    fn only_a_commit_of_unknown_outcome_is_uncertain() {
        assert!(is_uncertain(&uncertain(sqlx::Error::PoolClosed)));
        assert!(!is_uncertain(&unavailable(sqlx::Error::PoolClosed)));
        assert!(!is_uncertain(&DataError::Invalid(UNCERTAIN.into())));
    }

    #[tokio::test]
    async fn holds_posts_voids_and_settlement_keep_the_sums_derivable() {
        let (_tmp, s) = store().await;
        let credit = Op::Adjust {
            account: "key:a".into(),
            credit: true,
            amount: 100,
            reason: None,
            key: None,
            now_ms: 0,
        };
        let applied = s
            .apply(&[
                hold("k0", 10, 9),
                credit,
                hold("k1", 60, 9),
                hold("k1", 10, 9),
                hold("k2", 50, 9),
                hold("k3", 30, 9),
                // More than held: the charge stays at the hold.
                post("k1", 500),
                hold("k1", 10, 9),
                Op::Void {
                    request_key: "k3".into(),
                },
                post("k9", 5),
            ])
            .await
            .unwrap();
        assert_eq!(
            applied,
            [
                Applied::NoAccount,
                Applied::Adjusted {
                    entry: 1,
                    balance: 100
                },
                Applied::Held,
                Applied::InFlight,
                Applied::Insufficient { available: 40 },
                Applied::Held,
                Applied::Posted {
                    entry: 2,
                    amount: 60
                },
                Applied::AlreadyCharged,
                Applied::Voided,
                Applied::NotHeld,
            ]
        );
        let a = s.account("key:a").await.unwrap().unwrap();
        assert_eq!(
            (a.balance, a.pending, a.held, a.available),
            (100, 60, 0, 40)
        );
        assert_eq!(s.derived("key:a").await.unwrap(), (100, 60, 0));

        // An expired hold gives its money back.
        assert_eq!(
            s.apply(&[hold("k4", 40, 5)]).await.unwrap(),
            [Applied::Held]
        );
        assert_eq!(
            s.apply(&[Op::Expire { now_ms: 6 }]).await.unwrap(),
            [Applied::Expired(1)]
        );
        assert_eq!(s.account("key:a").await.unwrap().unwrap().available, 40);

        s.begin_settlement("s1", 7).await.unwrap();
        assert_eq!(s.settle_batch("s1", 10).await.unwrap(), (1, 60));
        assert_eq!(s.settle_batch("s1", 10).await.unwrap(), (0, 0));
        let a = s.account("key:a").await.unwrap().unwrap();
        assert_eq!((a.balance, a.pending, a.held), (40, 0, 0));
        assert_eq!(s.derived("key:a").await.unwrap(), (40, 0, 0));
        let lock = s.try_settle_lock().await.unwrap().unwrap();
        assert!(s.try_settle_lock().await.unwrap().is_none());
        lock.release().await;
    }
}
