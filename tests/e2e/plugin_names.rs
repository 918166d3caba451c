//! A plugin name — and the kv, cache and SQL data under it — belongs to the
//! file that first declared it. Another file declaring the same name is
//! refused whether the owner is loaded, unloaded, or was loaded before a
//! restart, until the operator releases the name.

use std::time::Duration;

use kiln_e2e::{ADMIN_TOKEN, Engine, TestPostgres, Value, fixture, wait_for};
use serde_json::json;

/// The load error of `<stem>.wasm` once the engine has tried it.
async fn refusal(e: &Engine, stem: &str) -> String {
    wait_for(Duration::from_secs(30), || async {
        let p = e.admin_plugin(stem).await?;
        p["last_error"].as_str().map(str::to_string)
    })
    .await
    .unwrap_or_else(|| panic!("{stem}.wasm was not refused: {}", e.log_text()))
}

async fn status(e: &Engine, path: &str) -> u16 {
    e.get(path).await.status().as_u16()
}

async fn a_second_file_never_reaches_the_first_ones_data(config: &str) {
    let mut e = Engine::builder()
        .config(config)
        .plugin("notes", "notes-rust", None)
        .plugin("store", "fixture-kv", None)
        .start()
        .await;
    // Data under the names notes-rust (SQL + kv) and fixture-kv (kv + cache).
    let r = e
        .client
        .post(e.url("/notes"))
        .json(&json!({"title": "secret", "body": "only for notes.wasm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for path in ["/kv/items/secret", "/kv/cache/secret"] {
        let r = e
            .client
            .put(e.url(path))
            .body("s3cret")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
    }

    // Other files that declare the same names (the same components, under
    // other file names: what they say about themselves is identical).
    e.install("evil-notes", &fixture("notes-rust"));
    e.install("evil-store", &fixture("fixture-kv"));
    for (stem, name, owner) in [
        ("evil-notes", "notes-rust", "notes.wasm"),
        ("evil-store", "fixture-kv", "store.wasm"),
    ] {
        let why = refusal(&e, stem).await;
        assert!(
            why.contains(&format!(
                "plugin name '{name}' of {stem}.wasm is already used by {owner}"
            )),
            "{why}"
        );
    }

    // The owners go away: the names stay theirs, so nothing serves the data.
    std::fs::remove_file(e.plugins_dir().join("notes.wasm")).unwrap();
    std::fs::remove_file(e.plugins_dir().join("store.wasm")).unwrap();
    let gone = wait_for(Duration::from_secs(30), || async {
        (status(&e, "/notes").await == 404 && status(&e, "/kv/items/secret").await == 404)
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "the owners were not unmounted");
    // Give the pass that retried the refused files time to run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in ["/notes", "/notes/1", "/kv/items/secret", "/kv/cache/secret"] {
        assert_eq!(
            status(&e, path).await,
            404,
            "{path} while the owner is unloaded"
        );
    }
    for stem in ["evil-notes", "evil-store"] {
        let p = e.admin_plugin(stem).await.unwrap();
        assert_ne!(p["state"], "active", "{p}");
        assert!(
            p["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("kiln plugins release")),
            "{p}"
        );
    }

    // After a restart the database still knows the owners.
    e.restart();
    for stem in ["evil-notes", "evil-store"] {
        let why = refusal(&e, stem).await;
        assert!(why.contains("is already used by"), "{why}");
    }
    for path in ["/notes", "/kv/items/secret"] {
        assert_eq!(status(&e, path).await, 404, "{path} after a restart");
    }

    // The listing names the owners; releasing is the operator's explicit act.
    let listed = e.cli(&["plugins", "names"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("notes-rust") && l.contains("notes.wasm")),
        "{listed}"
    );
    let out = e.cli(&["plugins", "release", "notes-rust"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = e
        .client
        .delete(e.url("/_kiln/v1/admin/plugin-names/fixture-kv"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let released: Value = r.json().await.unwrap();
    assert_eq!(released["file"], "store.wasm");
    // Touching the files lets the next pass claim the released names.
    e.install("evil-notes", &fixture("notes-rust"));
    e.install("evil-store", &fixture("fixture-kv"));
    let served = wait_for(Duration::from_secs(30), || async {
        let r = e.get("/notes/1").await;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "{}", e.log_text());
    // The data went with the name, as the operator chose.
    let note: Value = e.get("/notes/1").await.json().await.unwrap();
    assert_eq!(note["title"], "secret");
    let kv = e.get("/kv/items/secret").await.text().await.unwrap();
    assert_eq!(kv, "s3cret");
    let names = e.admin_get("/_kiln/v1/admin/plugin-names").await;
    let owners: Vec<(&str, &str)> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["file"].as_str().unwrap()))
        .collect();
    assert!(
        owners.contains(&("notes-rust", "evil-notes.wasm")),
        "{names}"
    );
    assert!(
        owners.contains(&("fixture-kv", "evil-store.wasm")),
        "{names}"
    );
    // Releasing is in the audit log.
    let audit = e.admin_get("/_kiln/v1/admin/audit").await;
    let released: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["action"] == "plugin_name.released")
        .collect();
    assert_eq!(released.len(), 2, "{audit}");
}

#[tokio::test]
async fn a_second_file_never_reaches_the_first_ones_data_on_sqlite() {
    a_second_file_never_reaches_the_first_ones_data("").await;
}

#[tokio::test]
async fn a_second_file_never_reaches_the_first_ones_data_on_postgres() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    a_second_file_never_reaches_the_first_ones_data(&format!("[database]\nurl = {:?}", pg.url))
        .await;
}
