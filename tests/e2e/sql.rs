use kiln_e2e::{Engine, TestPostgres, Value, json};

/// The notes example end to end: create, read, list, update, delete, stats.
async fn notes_round_trip(e: &Engine) {
    // A fresh plugin: no table yet, reads still answer.
    assert_eq!(
        e.get("/notes").await.json::<Value>().await.unwrap(),
        json!([])
    );
    assert_eq!(e.get("/notes/1").await.status(), 404);
    let r = e
        .client
        .post(e.url("/notes"))
        .json(&json!({"title": "first", "body": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/notes/1");
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["id"], 1);
    assert_eq!(first["title"], "first");
    assert!(first["created_at"].as_i64().unwrap() > 1_700_000_000_000);

    let r = e
        .client
        .post(e.url("/notes"))
        .json(&json!({"title": "second", "body": "Grüße ✓"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let list: Value = e.get("/notes").await.json().await.unwrap();
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["second", "first"]);
    let one: Value = e.get("/notes/2").await.json().await.unwrap();
    assert_eq!(one["body"], "Grüße ✓");

    let r = e
        .client
        .put(e.url("/notes/1"))
        .json(&json!({"title": "first", "body": "edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["body"], "edited");

    assert_eq!(
        e.client
            .delete(e.url("/notes/1"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(e.get("/notes/1").await.status(), 404);
    assert_eq!(
        e.client
            .delete(e.url("/notes/1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let stats: Value = e.get("/notes-stats").await.json().await.unwrap();
    assert_eq!(stats, json!({"created": 2, "stored": 1}));

    let r = e.client.post(e.url("/notes/2/views")).send().await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": 2, "views": 1})
    );
    let v: Value = e.get("/notes/2/views").await.json().await.unwrap();
    assert_eq!(v, json!({"id": 2, "views": 1}));

    // Input the example refuses, with reasons.
    let r = e
        .client
        .post(e.url("/notes"))
        .json(&json!({"title": "", "body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(e.get("/notes/abc").await.status(), 400);
    assert_eq!(e.get("/notes?limit=1000").await.status(), 400);
}

async fn run_sql(e: &Engine, kind: &str, sql: &str) -> (u16, Value) {
    let r = e
        .client
        .post(e.url(&format!("/sql/{kind}")))
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// The notes example with a secret note, beside a plugin that runs any SQL.
async fn notes_and_intruder(config: &str) -> Engine {
    let e = Engine::builder()
        .config(config)
        .plugin("notes", "notes-rust", None)
        .plugin("intruder", "fixture-sql", None)
        .start()
        .await;
    let r = e
        .client
        .post(e.url("/notes"))
        .json(&json!({"title": "secret", "body": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    e
}

#[tokio::test]
async fn the_notes_example_works_on_sqlite() {
    let e = Engine::builder()
        .plugin("notes", "notes-rust", None)
        .start()
        .await;
    notes_round_trip(&e).await;
    assert!(e.dir.path().join("data/plugins/notes-rust.db").is_file());
}

#[tokio::test]
async fn the_notes_example_works_on_postgres() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let e = Engine::builder()
        .config(&format!("[database]\nurl = {:?}", pg.url))
        .plugin("notes", "notes-rust", None)
        .start()
        .await;
    notes_round_trip(&e).await;
}

#[tokio::test]
async fn on_sqlite_a_plugin_cannot_reach_other_data() {
    let e = notes_and_intruder("").await;

    let (status, v) = run_sql(&e, "query", "SELECT * FROM notes").await;
    assert_eq!(status, 400);
    assert!(message(&v).contains("no such table"), "{v}");
    let (status, _) = run_sql(&e, "query", "SELECT * FROM kv").await;
    assert_eq!(status, 400);
    for attack in [
        format!(
            "ATTACH DATABASE '{}' AS engine",
            e.dir.path().join("data/kiln.db").display()
        ),
        format!(
            "ATTACH DATABASE '{}' AS notes",
            e.dir.path().join("data/plugins/notes-rust.db").display()
        ),
        format!("VACUUM INTO '{}'", e.dir.path().join("stolen.db").display()),
        "PRAGMA journal_mode = DELETE".to_string(),
    ] {
        let (status, v) = run_sql(&e, "execute", &attack).await;
        assert_eq!(status, 400, "{attack}: {v}");
    }
    assert!(!e.dir.path().join("stolen.db").exists());

    // Its own tables work, typed.
    run_sql(
        &e,
        "execute",
        "CREATE TABLE t (n INTEGER, r REAL, s TEXT, b BLOB)",
    )
    .await;
    run_sql(&e, "execute", "INSERT INTO t VALUES (1, 2.5, 'x', x'0102')").await;
    let (status, v) = run_sql(&e, "query", "SELECT * FROM t").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([{"n": 1, "r": 2.5, "s": "x", "b": [1, 2]}])
    );
    let (status, v) = run_sql(&e, "query", "SELEKT 1").await;
    assert_eq!(status, 400);
    assert!(message(&v).contains("syntax error"), "{v}");
}

#[tokio::test]
async fn on_postgres_a_plugin_cannot_reach_other_data() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let e = notes_and_intruder(&format!("[database]\nurl = {:?}", pg.url)).await;

    let (_, v) = run_sql(
        &e,
        "query",
        "SELECT current_user::text AS who, current_schema()::text AS schema",
    )
    .await;
    assert!(
        v["rows"][0]["who"].as_str().unwrap().starts_with("kr_"),
        "{v}"
    );
    assert_eq!(v["rows"][0]["schema"], "kp_fixture_sql");

    for attack in [
        "SELECT * FROM kp_notes_rust.notes",
        "SELECT * FROM public.kv",
        "SELECT * FROM public.sql_roles",
        "SELECT * FROM public.billing_accounts",
        // The ledger's batch function moves money: the engine's role only.
        r#"SELECT public.kiln_ledger_apply('[{"op": "adjust", "account": "key:x", "credit": true, "amount": 1000000, "reason": null, "key": null, "now_ms": 0}]')::text AS r"#,
        "SET ROLE postgres",
        "CREATE TABLE public.planted (x int)",
        "CREATE SCHEMA elsewhere",
    ] {
        let kind = if attack.starts_with("SELECT") {
            "query"
        } else {
            "execute"
        };
        let (status, v) = run_sql(&e, kind, attack).await;
        assert_eq!(status, 400, "{attack}: {v}");
        assert!(message(&v).contains("permission denied"), "{attack}: {v}");
    }

    // Its own schema works, with types mapped and others asked to be cast.
    run_sql(
        &e,
        "execute",
        "CREATE TABLE t (n BIGINT, r DOUBLE PRECISION, s TEXT, ok BOOLEAN, at TIMESTAMPTZ)",
    )
    .await;
    run_sql(
        &e,
        "execute",
        "INSERT INTO t VALUES (1, 2.5, 'x', true, now())",
    )
    .await;
    let (status, v) = run_sql(&e, "query", "SELECT n, r, s, ok FROM t").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!([{"n": 1, "r": 2.5, "s": "x", "ok": true}]));
    let (status, v) = run_sql(&e, "query", "SELECT at FROM t").await;
    assert_eq!(status, 400);
    assert!(message(&v).contains("at::text"), "{v}");
    let (status, v) = run_sql(&e, "execute", "INSERT INTO t (n) VALUES ('not a number')").await;
    assert_eq!(status, 400);
    assert!(message(&v).contains("invalid input syntax"), "{v}");
}
