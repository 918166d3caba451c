use std::process::Command;

use kiln_e2e::{Engine, TestPostgres, Value, kiln_bin, workspace_root};

/// How many migrations the engine embeds for `dialect`.
fn migration_files(dialect: &str) -> i64 {
    std::fs::read_dir(workspace_root().join("migrations").join(dialect))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count() as i64
}

#[tokio::test]
async fn the_default_database_is_a_migrated_sqlite_file_in_the_data_dir() {
    let e = Engine::builder().start().await;
    let v: Value = e.get("/_kiln/v1/health").await.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"], "sqlite");
    let db = e.dir.path().join("data/kiln.db");
    assert!(db.is_file());
    let url = format!("sqlite://{}", db.display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, migration_files("sqlite"));
}

#[tokio::test]
async fn a_failed_migration_stops_start_up_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kiln.db");
    {
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE kv (unrelated INTEGER)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for args in [&["serve", "--listen", "127.0.0.1:0"][..], &["migrate"][..]] {
        let out = Command::new(kiln_bin())
            .args(args)
            .env("KILN_DATA_DIR", tmp.path())
            .env("KILN_PLUGINS_DIR", tmp.path().join("plugins"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("migration 0001_kv.sql failed"),
            "{args:?}: {err}"
        );
        assert!(err.contains("already exists"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn postgres_is_chosen_by_the_url_and_migrated() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let e = Engine::builder()
        .config(&format!(
            "[database]\nurl = {:?}\nmax_connections = 4",
            pg.url
        ))
        .start()
        .await;
    let v: Value = e.get("/_kiln/v1/health").await.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"], "postgres");
    assert!(!e.dir.path().join("data/kiln.db").exists());

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, migration_files("postgres"));

    // `kiln migrate` on an up-to-date database changes nothing and succeeds.
    let out = Command::new(kiln_bin())
        .arg("migrate")
        .env("KILN_DATABASE_URL", &pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
}

#[tokio::test]
async fn an_unreachable_database_stops_start_up_with_the_url_but_not_the_password() {
    let out = Command::new(kiln_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KILN_DATA_DIR", tempfile::tempdir().unwrap().path())
        .env(
            "KILN_DATABASE_URL",
            "postgres://kiln:hunter2@127.0.0.1:1/kiln",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to postgres://kiln:***@127.0.0.1:1/kiln"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
