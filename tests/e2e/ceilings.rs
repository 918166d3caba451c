//! Operator ceilings: a plugin's own `<stem>.toml` (its author wrote it,
//! `kiln build` copies it) may lower the engine's `[limits]`, never raise
//! them, and may not map `[secrets]` to the engine's environment; the
//! operator's `[plugins.<stem>]` may set anything. The outbound ceiling is
//! in `outbound.rs`.

use std::time::Duration;

use kiln_e2e::{Engine, error_of, wait_for};

/// The load error the admin API reports for `<stem>.wasm`.
async fn load_error(e: &Engine, stem: &str) -> String {
    wait_for(Duration::from_secs(10), || async {
        let p = e.admin_plugin(stem).await?;
        p["last_error"].as_str().map(String::from)
    })
    .await
    .unwrap_or_else(|| panic!("no error reported for {stem}; log:\n{}", e.log_text()))
}

/// (stem, the plugin file's `[limits]` body, the key, the asked value and
/// the ceiling as the message names them). The engine below sets
/// `instances = "fresh"`; everything else is the built-in default.
const OVER: &[(&str, &str, &str, &str, &str)] = &[
    (
        "fuel",
        "fuel = 9000000000",
        "fuel",
        "9000000000",
        "2000000000",
    ),
    (
        "timeout",
        "timeout_ms = 60000",
        "timeout_ms",
        "60000",
        "10000",
    ),
    (
        "memory",
        "memory = \"128MiB\"",
        "memory",
        "\"128MiB\"",
        "\"64MiB\"",
    ),
    (
        "concurrency",
        "max_concurrency = 100",
        "max_concurrency",
        "100",
        "64",
    ),
    ("queue", "queue_size = 1000", "queue_size", "1000", "256"),
    (
        "queue-wait",
        "queue_timeout_ms = 10000",
        "queue_timeout_ms",
        "10000",
        "2000",
    ),
    ("warm", "warm_instances = 50", "warm_instances", "50", "16"),
    ("uses", "max_uses = 5000", "max_uses", "5000", "1000"),
    (
        "idle",
        "idle_timeout_ms = 0",
        "idle_timeout_ms",
        "0 (never)",
        "60000",
    ),
    (
        "reuse",
        "instances = \"warm\"",
        "instances",
        "\"warm\"",
        "\"fresh\"",
    ),
];

#[tokio::test]
async fn a_plugin_file_asking_more_than_the_engine_allows_is_refused_and_does_not_serve() {
    let mut b = Engine::builder().config("[limits]\ninstances = \"fresh\"");
    for (stem, limits, ..) in OVER {
        b = b.plugin(stem, "fixture-limits", Some(&format!("[limits]\n{limits}")));
    }
    let e = b.start().await;
    for (stem, _, key, asked, ceiling) in OVER {
        let err = load_error(&e, stem).await;
        let want = format!(
            "{stem}.toml: limits.{key} = {asked} exceeds the engine's ceiling {ceiling} \
             ([limits] {key}); lower it, or raise it for this plugin with \
             [plugins.{stem}.limits] in the engine config"
        );
        assert!(err.ends_with(&want), "{stem}:\n{err}\nwanted:\n{want}");
        let status = e.admin_plugin(stem).await.unwrap();
        assert_eq!(status["state"], "failed", "{stem}: {status}");
    }
    // None of them serves (they all carry fixture-limits' routes).
    assert_eq!(e.get("/limits/ok").await.status(), 404);
    assert!(
        !e.log_lines_with(&["plugin not loaded", "limits.fuel = 9000000000"])
            .is_empty(),
        "{}",
        e.log_text()
    );
}

#[tokio::test]
async fn the_same_values_in_the_operators_plugins_limits_are_accepted() {
    let e = Engine::builder()
        .config(
            "[plugins.limits.limits]\nfuel = 9000000000\ntimeout_ms = 60000\nmemory = \"128MiB\"\n\
             max_concurrency = 100\nqueue_size = 1000\nqueue_timeout_ms = 10000\n\
             warm_instances = 50\nmax_uses = 5000\nidle_timeout_ms = 0\ninstances = \"warm\"",
        )
        .config("[limits]\ninstances = \"fresh\"")
        .plugin("limits", "fixture-limits", None)
        .start()
        .await;
    assert_eq!(e.get("/limits/ok").await.status(), 200);
    let status = e.admin_plugin("limits").await.unwrap();
    assert_eq!(status["state"], "active", "{status}");
    let limits = &status["limits"];
    assert_eq!(limits["fuel"], 9_000_000_000u64, "{limits}");
    assert_eq!(limits["timeout_ms"], 60000);
    assert_eq!(limits["memory"], 128u64 << 20);
    assert_eq!(limits["max_concurrency"], 100);
    assert_eq!(limits["queue_size"], 1000);
    assert_eq!(limits["queue_timeout_ms"], 10000);
    assert_eq!(limits["warm_instances"], 50);
    assert_eq!(limits["max_uses"], 5000);
    assert_eq!(limits["idle_timeout_ms"], 0);
    assert_eq!(limits["instances"], "warm");
}

#[tokio::test]
async fn a_plugin_file_may_lower_its_limits_and_the_lower_timeout_applies() {
    let e = Engine::builder()
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\ntimeout_ms = 300\nmax_concurrency = 2\nfuel = 1000000000"),
        )
        .start()
        .await;
    let status = e.admin_plugin("limits").await.unwrap();
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["limits"]["max_concurrency"], 2);
    let (status, code, message) = error_of(e.get("/limits/sleep/3000").await).await;
    assert_eq!(
        (status, code.as_str()),
        (504, "plugin_timeout"),
        "{message}"
    );
    assert!(message.contains("300 ms"), "{message}");
    assert_eq!(e.get("/limits/ok").await.status(), 200);
}

#[tokio::test]
async fn secrets_in_a_plugin_file_are_refused_so_it_cannot_read_the_engines_environment() {
    let stolen = "engine-credential-the-plugin-must-not-see";
    let e = Engine::builder()
        .env("KILN_E2E_ENGINE_CREDENTIAL", stolen)
        .plugin(
            "basic",
            "fixture-basic",
            Some("[secrets]\napi_key = \"KILN_E2E_ENGINE_CREDENTIAL\""),
        )
        .start()
        .await;
    let err = load_error(&e, "basic").await;
    assert!(
        err.contains("basic.toml: [secrets] is not allowed in a plugin's own settings")
            && err.contains("move it to [plugins.basic.secrets] in the engine config"),
        "{err}"
    );
    assert_eq!(e.get("/basic/secret/api_key").await.status(), 404);
    assert!(!e.log_text().contains(stolen));
}
