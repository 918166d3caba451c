//! A plugin's own SQL tables, and nothing else.
//!
//! * SQLite: each plugin gets its own database file,
//!   `<data_dir>/plugins/<name>.db`, and its connections carry an authorizer
//!   that refuses `ATTACH`/`DETACH`, `PRAGMA` and extension loading, with
//!   the attached-database limit at zero (which also stops `VACUUM INTO`).
//! * PostgreSQL: each plugin gets a schema and a login role that owns it and
//!   has no rights anywhere else; its connections log in as that role, so
//!   `SET ROLE` tricks gain nothing. Role passwords live in the engine's
//!   `sql_roles` table so every engine on the database agrees on them.
//!
//! Every statement runs with bound parameters; results are typed values,
//! bounded in rows and bytes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, PgPool, Row, SqlitePool, TypeInfo, ValueRef};

use super::{DataError, Database};

pub const MAX_STATEMENT_BYTES: usize = 64 * 1024;
pub const MAX_PARAMS: usize = 1000;
pub const MAX_ROWS: usize = 10_000;
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_BATCH: usize = 100;
const POOL_SIZE: u32 = 4;

/// A SQL value as it crosses the WIT boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Boolean(bool),
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

fn invalid(message: impl Into<String>) -> DataError {
    DataError::Invalid(message.into())
}

/// Errors the database reports about the statement itself (syntax, missing
/// table, constraint, type) are the plugin's to fix; the rest are outages.
fn classify(e: sqlx::Error) -> DataError {
    match &e {
        sqlx::Error::Database(db) => DataError::Invalid(format!("SQL error: {}", db.message())),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::TypeNotFound { .. } => {
            DataError::Invalid(format!("SQL error: {e}"))
        }
        _ => DataError::Unavailable(e.to_string()),
    }
}

fn check_statement(sql: &str, params: &[Value]) -> Result<(), DataError> {
    if sql.trim().is_empty() {
        return Err(invalid("the statement is empty"));
    }
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(invalid(format!(
            "the statement is longer than {MAX_STATEMENT_BYTES} bytes"
        )));
    }
    if params.len() > MAX_PARAMS {
        return Err(invalid(format!(
            "{} parameters; at most {MAX_PARAMS}",
            params.len()
        )));
    }
    Ok(())
}

#[derive(Clone)]
enum PluginPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Per-plugin pools, created on a plugin's first SQL call and kept across
/// reloads of the same plugin.
pub struct SqlService {
    db: Database,
    /// Where SQLite plugin databases live.
    dir: PathBuf,
    pools: Mutex<HashMap<String, PluginPool>>,
}

impl SqlService {
    pub fn new(db: Database, data_dir: &std::path::Path) -> Arc<Self> {
        Arc::new(SqlService {
            db,
            dir: data_dir.join("plugins"),
            pools: Mutex::new(HashMap::new()),
        })
    }

    async fn pool(&self, plugin: &str) -> Result<PluginPool, DataError> {
        if let Some(p) = self
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
        {
            return Ok(p.clone());
        }
        let pool = match &self.db {
            Database::Sqlite(_) => PluginPool::Sqlite(self.open_sqlite(plugin).await?),
            Database::Postgres(admin) => PluginPool::Postgres(open_postgres(admin, plugin).await?),
        };
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        Ok(pools.entry(plugin.to_string()).or_insert(pool).clone())
    }

    async fn open_sqlite(&self, plugin: &str) -> Result<SqlitePool, DataError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            DataError::Unavailable(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(self.dir.join(format!("{plugin}.db")))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    confine(handle.as_raw_handle().as_ptr());
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| DataError::Unavailable(format!("cannot open the plugin database: {e}")))
    }

    pub async fn execute(
        &self,
        plugin: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, DataError> {
        check_statement(sql, params)?;
        match self.pool(plugin).await? {
            PluginPool::Sqlite(pool) => bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql)), params)
                .execute(&pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(classify),
            PluginPool::Postgres(pool) => bind_pg(sqlx::query(sqlx::AssertSqlSafe(sql)), params)
                .execute(&pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(classify),
        }
    }

    pub async fn query(
        &self,
        plugin: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<QueryResult, DataError> {
        check_statement(sql, params)?;
        match self.pool(plugin).await? {
            PluginPool::Sqlite(pool) => {
                let rows = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql)), params).fetch(&pool);
                collect(rows, sqlite_value).await
            }
            PluginPool::Postgres(pool) => {
                let rows = bind_pg(sqlx::query(sqlx::AssertSqlSafe(sql)), params).fetch(&pool);
                collect(rows, pg_value).await
            }
        }
    }

    /// Runs every statement in one transaction: all of them or none.
    pub async fn transaction(
        &self,
        plugin: &str,
        statements: &[(String, Vec<Value>)],
    ) -> Result<Vec<u64>, DataError> {
        if statements.is_empty() || statements.len() > MAX_BATCH {
            return Err(invalid(format!(
                "a transaction takes 1-{MAX_BATCH} statements"
            )));
        }
        for (sql, params) in statements {
            check_statement(sql, params)?;
        }
        let mut counts = Vec::with_capacity(statements.len());
        match self.pool(plugin).await? {
            PluginPool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
                for (i, (sql, params)) in statements.iter().enumerate() {
                    let r = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), params)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| numbered(i, classify(e)))?;
                    counts.push(r.rows_affected());
                }
                tx.commit().await.map_err(classify)?;
            }
            PluginPool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(classify)?;
                for (i, (sql, params)) in statements.iter().enumerate() {
                    let r = bind_pg(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), params)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| numbered(i, classify(e)))?;
                    counts.push(r.rows_affected());
                }
                tx.commit().await.map_err(classify)?;
            }
        }
        Ok(counts)
    }
}

/// Prefixes a plugin-facing error with the statement's position.
fn numbered(i: usize, e: DataError) -> DataError {
    match e {
        DataError::Invalid(m) => DataError::Invalid(format!("statement {}: {m}", i + 1)),
        other => other,
    }
}

/// Reads rows as the database sends them and stops at the first one past
/// the row or byte limit, so a plugin's query never holds more than the
/// limits in host memory.
async fn collect<R: Row>(
    mut rows: futures_util::stream::BoxStream<'_, Result<R, sqlx::Error>>,
    value: impl Fn(&R, usize) -> Result<Value, DataError>,
) -> Result<QueryResult, DataError> {
    use futures_util::TryStreamExt;
    let mut columns: Vec<String> = Vec::new();
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await.map_err(classify)? {
        if out.len() == MAX_ROWS {
            return Err(invalid(format!(
                "the query returned more than {MAX_ROWS} rows — add LIMIT"
            )));
        }
        if out.is_empty() {
            columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        }
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..row.columns().len() {
            let v = value(&row, i)?;
            bytes += v.size();
            values.push(v);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(invalid(format!(
                "the query result is larger than {MAX_RESULT_BYTES} bytes — select fewer rows or columns"
            )));
        }
        out.push(values);
    }
    Ok(QueryResult { columns, rows: out })
}

fn bind_sqlite<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for p in params {
        q = match p {
            Value::Null => q.bind(None::<i64>),
            Value::Integer(i) => q.bind(*i),
            Value::Real(f) => q.bind(*f),
            Value::Text(s) => q.bind(s.as_str()),
            Value::Blob(b) => q.bind(b.as_slice()),
            Value::Boolean(b) => q.bind(*b),
        };
    }
    q
}

fn bind_pg<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for p in params {
        q = match p {
            // An untyped NULL does not exist in sqlx; text NULL converts to
            // most column types, and `$n::type` makes the rest explicit.
            Value::Null => q.bind(None::<String>),
            Value::Integer(i) => q.bind(*i),
            Value::Real(f) => q.bind(*f),
            Value::Text(s) => q.bind(s.as_str()),
            Value::Blob(b) => q.bind(b.as_slice()),
            Value::Boolean(b) => q.bind(*b),
        };
    }
    q
}

/// SQLite values carry their own storage class.
fn sqlite_value(row: &SqliteRow, i: usize) -> Result<Value, DataError> {
    let raw = row.try_get_raw(i).map_err(classify)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_ascii_uppercase();
    let v = match kind.as_str() {
        "INTEGER" | "INT" | "BIGINT" => Value::Integer(row.try_get(i).map_err(classify)?),
        "BOOLEAN" => Value::Boolean(row.try_get(i).map_err(classify)?),
        "REAL" | "FLOAT" | "DOUBLE" => Value::Real(row.try_get(i).map_err(classify)?),
        "BLOB" => Value::Blob(row.try_get(i).map_err(classify)?),
        _ => Value::Text(row.try_get(i).map_err(classify)?),
    };
    Ok(v)
}

/// PostgreSQL values by column type; other types must be cast in the query.
fn pg_value(row: &PgRow, i: usize) -> Result<Value, DataError> {
    let raw = row.try_get_raw(i).map_err(classify)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    let v = match ty.as_str() {
        "INT2" => Value::Integer(i64::from(row.try_get::<i16, _>(i).map_err(classify)?)),
        "INT4" => Value::Integer(i64::from(row.try_get::<i32, _>(i).map_err(classify)?)),
        "INT8" => Value::Integer(row.try_get(i).map_err(classify)?),
        "FLOAT4" => Value::Real(f64::from(row.try_get::<f32, _>(i).map_err(classify)?)),
        "FLOAT8" => Value::Real(row.try_get(i).map_err(classify)?),
        "BOOL" => Value::Boolean(row.try_get(i).map_err(classify)?),
        "BYTEA" => Value::Blob(row.try_get(i).map_err(classify)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
            Value::Text(row.try_get(i).map_err(classify)?)
        }
        other => {
            let column = row.columns()[i].name().to_string();
            return Err(invalid(format!(
                "column {column} has type {other}, which the sql interface does not carry; \
                 cast it in the query (e.g. {column}::text)"
            )));
        }
    };
    Ok(v)
}

// ---- SQLite confinement ----

use std::ffi::{CStr, c_char, c_int, c_void};

use libsqlite3_sys as ffi;

/// Installs the authorizer and the attach limit on a plugin connection.
fn confine(db: *mut ffi::sqlite3) {
    // SAFETY: `db` is a live connection handle locked by the caller for the
    // duration of this call; both functions only set connection state.
    unsafe {
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
        ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut());
    }
}

unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    _: *const c_char,
    arg2: *const c_char,
    _: *const c_char,
    _: *const c_char,
) -> c_int {
    match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH | ffi::SQLITE_PRAGMA => ffi::SQLITE_DENY,
        ffi::SQLITE_FUNCTION => {
            // arg2 is the function name.
            let name = if arg2.is_null() {
                ""
            } else {
                // SAFETY: SQLite passes a NUL-terminated string or null.
                unsafe { CStr::from_ptr(arg2) }.to_str().unwrap_or("")
            };
            if name.eq_ignore_ascii_case("load_extension") {
                ffi::SQLITE_DENY
            } else {
                ffi::SQLITE_OK
            }
        }
        _ => ffi::SQLITE_OK,
    }
}

// ---- PostgreSQL roles and schemas ----

/// `prefix` + the plugin name as a PostgreSQL identifier (`-` becomes `_`),
/// shortened with a hash to fit the 63-byte limit.
fn pg_identifier(prefix: &str, plugin: &str) -> String {
    let name = plugin.replace('-', "_");
    if prefix.len() + name.len() <= 63 {
        return format!("{prefix}{name}");
    }
    let hash = crate::hash::sha256_hex(plugin.as_bytes());
    let keep = 63 - prefix.len() - 9;
    format!("{prefix}{}_{}", &name[..keep], &hash[..8])
}

/// Role names are cluster-wide, so they carry a hash of the database name:
/// the same plugin in two databases of one server gets two roles.
pub fn pg_role_prefix(database: &str) -> String {
    format!("kr_{}_", &crate::hash::sha256_hex(database.as_bytes())[..8])
}

async fn open_postgres(admin: &PgPool, plugin: &str) -> Result<PgPool, DataError> {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(admin)
        .await
        .map_err(|e| DataError::Unavailable(e.to_string()))?;
    let role = pg_identifier(&pg_role_prefix(&database), plugin);
    let schema = pg_identifier("kp_", plugin);
    let setup = |e: sqlx::Error| {
        DataError::Unavailable(format!(
            "cannot set up role {role} and schema {schema} for plugin '{plugin}': {e} (the \
             engine's database user needs CREATEROLE)"
        ))
    };
    let fresh: String = {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        hex::encode(bytes)
    };
    // One row per plugin; the first engine to get here picks the password.
    sqlx::query(
        "INSERT INTO sql_roles (plugin, role_name, schema_name, password) VALUES ($1, $2, $3, $4)
         ON CONFLICT (plugin) DO NOTHING",
    )
    .bind(plugin)
    .bind(&role)
    .bind(&schema)
    .bind(&fresh)
    .execute(admin)
    .await
    .map_err(setup)?;
    let password: String = sqlx::query_scalar("SELECT password FROM sql_roles WHERE plugin = $1")
        .bind(plugin)
        .fetch_one(admin)
        .await
        .map_err(setup)?;
    // Identifiers come from validated plugin names ([a-z0-9_]) and the
    // password from hex: nothing here needs quoting beyond what is done.
    let statements = [
        format!(
            "DO $$ BEGIN CREATE ROLE \"{role}\" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ),
        format!(
            "ALTER ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'"
        ),
        format!("ALTER ROLE \"{role}\" CONNECTION LIMIT 16"),
        format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\" AUTHORIZATION \"{role}\""),
        format!("ALTER ROLE \"{role}\" SET search_path = \"{schema}\""),
    ];
    let mut conn = admin.acquire().await.map_err(setup)?;
    for sql in statements {
        // Roles are cluster-wide: two engines may race to create the same one.
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
        {
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "23505" || c == "42710" || c == "42P06");
            if !duplicate {
                return Err(setup(e));
            }
        }
    }
    let mut options: PgConnectOptions = admin.connect_options().as_ref().clone();
    options = options.username(&role).password(&password);
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| DataError::Unavailable(format!("cannot connect as {role}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseConfig;

    async fn service() -> (tempfile::TempDir, Arc<SqlService>) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::connect(&DatabaseConfig::default(), tmp.path())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let svc = SqlService::new(db, tmp.path());
        (tmp, svc)
    }

    #[tokio::test]
    async fn typed_round_trip_and_transactions_on_sqlite() {
        let (_tmp, sql) = service().await;
        sql.execute("a", "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, score REAL, data BLOB)", &[])
            .await
            .unwrap();
        let n = sql
            .execute(
                "a",
                "INSERT INTO notes (title, score, data) VALUES ($1, $2, $3)",
                &[
                    Value::Text("hi".into()),
                    Value::Real(1.5),
                    Value::Blob(vec![1, 2]),
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        let r = sql
            .query(
                "a",
                "SELECT id, title, score, data, NULL AS empty FROM notes",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(r.columns, ["id", "title", "score", "data", "empty"]);
        assert_eq!(
            r.rows,
            [vec![
                Value::Integer(1),
                Value::Text("hi".into()),
                Value::Real(1.5),
                Value::Blob(vec![1, 2]),
                Value::Null
            ]]
        );
        // All or nothing.
        let err = sql
            .transaction(
                "a",
                &[
                    ("INSERT INTO notes (title) VALUES ('two')".into(), vec![]),
                    ("INSERT INTO notes (title) VALUES (NULL)".into(), vec![]),
                ],
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("statement 2: SQL error"),
            "{err}"
        );
        let r = sql
            .query("a", "SELECT count(*) FROM notes", &[])
            .await
            .unwrap();
        assert_eq!(r.rows, [vec![Value::Integer(1)]]);
    }

    #[tokio::test]
    async fn plugins_have_separate_databases_and_cannot_escape() {
        let (tmp, sql) = service().await;
        sql.execute("a", "CREATE TABLE secret (v TEXT)", &[])
            .await
            .unwrap();
        sql.execute("a", "INSERT INTO secret VALUES ('a-only')", &[])
            .await
            .unwrap();
        let err = sql
            .query("b", "SELECT * FROM secret", &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such table"), "{err}");
        let engine_db = tmp.path().join("kiln.db");
        let attach = format!("ATTACH DATABASE '{}' AS engine", engine_db.display());
        let err = sql
            .execute("b", &attach, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not authorized") || err.contains("too many attached"),
            "{err}"
        );
        let other = tmp.path().join("plugins/a.db");
        let err = sql
            .execute("b", &format!("ATTACH '{}' AS a", other.display()), &[])
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)));
        let copy = tmp.path().join("stolen.db");
        let err = sql
            .execute("a", &format!("VACUUM INTO '{}'", copy.display()), &[])
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{err}");
        assert!(!copy.exists());
        assert!(
            sql.query("a", "PRAGMA table_info(secret)", &[])
                .await
                .is_err()
        );
        assert!(
            sql.query("a", "SELECT load_extension('x')", &[])
                .await
                .is_err()
        );
    }

    #[test]
    fn pg_identifiers_fit_and_stay_distinct() {
        assert_eq!(pg_identifier("kp_", "notes-rust"), "kp_notes_rust");
        let long = "a".repeat(64);
        let id = pg_identifier("kr_12345678_", &long);
        assert_eq!(id.len(), 63);
        assert_ne!(
            id,
            pg_identifier("kr_12345678_", &format!("{}b", "a".repeat(63)))
        );
        assert_ne!(pg_role_prefix("db1"), pg_role_prefix("db2"));
    }

    #[tokio::test]
    async fn limits_and_mistakes_are_clear_errors() {
        let (_tmp, sql) = service().await;
        assert!(
            sql.execute("a", " ", &[])
                .await
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let err = sql.query("a", "SELEC 1", &[]).await.unwrap_err();
        assert!(
            matches!(err, DataError::Invalid(ref m) if m.contains("syntax")),
            "{err}"
        );
        let many = sql
            .query("a", "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 10001) SELECT x FROM n", &[])
            .await
            .unwrap_err();
        assert!(many.to_string().contains("add LIMIT"), "{many}");
        let big = sql
            .query("a", "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 5) SELECT randomblob(1000000) FROM n", &[])
            .await
            .unwrap_err();
        assert!(big.to_string().contains("larger than"), "{big}");
        assert!(sql.transaction("a", &[]).await.is_err());
    }
}
