//! The engine's database: an sqlx pool for SQLite (the embedded default, one
//! file under the data directory) or PostgreSQL (scale-out), chosen by the
//! URL, with the engine's migrations embedded in the binary.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::Secret;

/// `[database]`: the engine's database and its connection pool.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB` (`KILN_DATABASE_URL`).
    /// Default: the SQLite file `kiln.db` in the data directory.
    pub url: Option<Secret>,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a caller waits for a free connection.
    pub acquire_timeout_ms: u64,
    /// Idle connections above `min_connections` close after this (0 = never).
    pub idle_timeout_ms: u64,
    /// Connections are replaced after this age (0 = never).
    pub max_lifetime_ms: u64,
    /// Check a connection is alive before handing it out.
    pub test_before_acquire: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout_ms: 5_000,
            idle_timeout_ms: 600_000,
            max_lifetime_ms: 1_800_000,
            test_before_acquire: true,
        }
    }
}

impl DatabaseConfig {
    /// The URL to connect to.
    pub fn url(&self, data_dir: &Path) -> String {
        match &self.url {
            Some(url) => url.expose().to_string(),
            None => format!("sqlite://{}", data_dir.join("kiln.db").display()),
        }
    }
}

impl crate::config::Section for DatabaseConfig {
    const KEY: &'static str = "database";

    fn apply_env(&mut self, env: crate::config::Env<'_>) -> Result<(), crate::config::ConfigError> {
        if let Some(v) = env("KILN_DATABASE_URL") {
            self.url = Some(Secret::new(v));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::invalid;
        if self.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.min_connections > self.max_connections {
            return Err(invalid(
                "database.min_connections",
                "must not exceed max_connections",
            ));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(invalid(
                "database.acquire_timeout_ms",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// Runs the same sqlx code on whichever pool the database is: the SQL text
/// of the engine's tables is written to suit both dialects.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Database::Sqlite($pool) => $body,
            Database::Postgres($pool) => $body,
        }
    };
}

pub mod announce;
pub mod api_keys;
pub mod audit;
pub mod cache;
pub mod checkpoint;
pub mod kv;
pub mod ledger;
pub mod plugin_names;
pub mod sql;
pub(crate) mod sqlite_direct;

/// Unix seconds (as the engine's tables keep time) in RFC 3339
/// (`2026-12-01T09:20:05Z`), for people.
pub fn rfc3339(unix_s: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_s).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// How a data operation a plugin asked for failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    /// The plugin asked for something the store refuses: shown to it as is.
    #[error("{0}")]
    Invalid(String),
    /// The backing service failed or did not answer.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database.url {url} is not a sqlite: or postgres: URL")]
    UnknownScheme { url: String },
    #[error("database.url {url} is invalid: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migration {file} failed: {message}")]
    Migration { file: String, message: String },
    #[error("migrating {url} failed: {message}")]
    MigrationState { url: String, message: String },
}

/// Which kind of database, for SQL that differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// Opens the pool `config` describes. A SQLite file is created (with its
    /// directory) when missing and runs in WAL mode.
    pub async fn connect(config: &DatabaseConfig, data_dir: &Path) -> Result<Database, StoreError> {
        let url = config.url(data_dir);
        let shown = redact(&url);
        let bad = |message: String| StoreError::BadUrl {
            url: shown.clone(),
            message,
        };
        let connect = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            if let Some(parent) = Path::new(options.get_filename()).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| bad(format!("cannot create {}: {e}", parent.display())))?;
            }
            let pool = pool_options::<sqlx::Sqlite>(config)
                .connect_with(options)
                .await
                .map_err(connect)?;
            Ok(Database::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(&url).map_err(|e| bad(e.to_string()))?;
            let pool = pool_options::<sqlx::Postgres>(config)
                .connect_with(options)
                .await
                .map_err(connect)?;
            Ok(Database::Postgres(pool))
        } else {
            Err(StoreError::UnknownScheme { url: shown })
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Sqlite(_) => Dialect::Sqlite,
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Database::Sqlite(_) => &SQLITE_MIGRATIONS,
            Database::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every embedded migration not applied yet, in order. A failure
    /// names the migration file and carries the database's message.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let migrator = self.migrator();
        let result = match self {
            Database::Sqlite(pool) => migrator.run(pool).await,
            Database::Postgres(pool) => migrator.run(pool).await,
        };
        result.map_err(|e| match e {
            MigrateError::ExecuteMigration(source, version) => StoreError::Migration {
                file: migration_file(migrator, version),
                message: source.to_string(),
            },
            other => StoreError::MigrationState {
                url: self.dialect_name().to_string(),
                message: other.to_string(),
            },
        })?;
        Ok(migrator
            .iter()
            .map(|m| migration_file(migrator, m.version))
            .collect())
    }

    fn dialect_name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "the SQLite database",
            Database::Postgres(_) => "the PostgreSQL database",
        }
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    pub async fn close(&self) {
        match self {
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }
}

/// The pool settings of `[database]`, for either kind of database.
fn pool_options<DB: sqlx::Database>(config: &DatabaseConfig) -> PoolOptions<DB> {
    let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    PoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .idle_timeout(millis(config.idle_timeout_ms))
        .max_lifetime(millis(config.max_lifetime_ms))
        .test_before_acquire(config.test_before_acquire)
}

/// `0001_kv.sql` for version 1, as the file is named in `migrations/`.
fn migration_file(migrator: &Migrator, version: i64) -> String {
    migrator
        .iter()
        .find(|m| m.version == version)
        .map(|m| format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_")))
        .unwrap_or_else(|| format!("migration {version}"))
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://kiln:s3cret@db:5432/kiln"),
            "postgres://kiln:***@db:5432/kiln"
        );
        assert_eq!(redact("postgres://kiln@db/kiln"), "postgres://kiln@db/kiln");
        assert_eq!(redact("sqlite://.kiln/kiln.db"), "sqlite://.kiln/kiln.db");
    }

    #[test]
    fn migration_files_are_named_as_on_disk() {
        assert_eq!(migration_file(&SQLITE_MIGRATIONS, 1), "0001_kv.sql");
        assert_eq!(migration_file(&POSTGRES_MIGRATIONS, 1), "0001_kv.sql");
    }

    #[tokio::test]
    async fn sqlite_is_created_in_wal_mode_and_migrated_twice_safely() {
        let tmp = tempfile::tempdir().unwrap();
        let config = DatabaseConfig::default();
        let db = Database::connect(&config, tmp.path()).await.unwrap();
        assert_eq!(
            db.migrate().await.unwrap(),
            [
                "0001_kv.sql",
                "0002_api_keys.sql",
                "0003_audit_log.sql",
                "0004_plugin_names.sql",
                "0005_billing.sql",
                "0006_billing_holds.sql"
            ]
        );
        db.migrate().await.unwrap();
        let Database::Sqlite(pool) = &db else {
            panic!("expected SQLite")
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(tmp.path().join("kiln.db").is_file());
    }

    #[tokio::test]
    async fn a_failing_migration_names_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let config = DatabaseConfig::default();
        let db = Database::connect(&config, tmp.path()).await.unwrap();
        let Database::Sqlite(pool) = &db else {
            panic!("expected SQLite")
        };
        sqlx::query("CREATE TABLE kv (x INTEGER)")
            .execute(pool)
            .await
            .unwrap();
        let err = db.migrate().await.unwrap_err().to_string();
        assert!(
            err.contains("0001_kv.sql") && err.contains("already exists"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused() {
        let config = DatabaseConfig {
            url: Some(crate::config::Secret::new("mysql://x/y")),
            ..Default::default()
        };
        let err = Database::connect(&config, Path::new("."))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a sqlite: or postgres: URL"), "{err}");
    }
}
