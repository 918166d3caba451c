//! Outbound HTTP through `wasi:http/outgoing-handler`: JavaScript `fetch`
//! and the Rust SDK's client reach the hosts in the plugin's
//! `[outbound] allowed_hosts` and nothing else. The "other" host is a live
//! server too, so a refusal cannot be mistaken for a dead port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_e2e::Engine;
use serde_json::Value;

/// A loopback HTTP server counting the requests it gets.
struct Upstream {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn upstream(greeting: &'static str) -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let (get_hits, post_hits) = (hits.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/data",
            axum::routing::get(move || {
                get_hits.fetch_add(1, Ordering::SeqCst);
                async move { greeting }
            }),
        )
        .route(
            "/echo",
            axum::routing::post(move |body: String| {
                post_hits.fetch_add(1, Ordering::SeqCst);
                async move { (axum::http::StatusCode::CREATED, format!("got: {body}")) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream { base, hits }
}

fn enc(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

#[tokio::test]
async fn js_fetch_reaches_allowed_hosts_and_is_refused_elsewhere() {
    let allowed = upstream("hello from upstream").await;
    let other = upstream("should never be read").await;
    let settings = format!("[outbound]\nallowed_hosts = [{:?}]\n", allowed.base);
    let engine = Engine::builder()
        .plugin("fixture-js", "fixture-js", Some(&settings))
        .start()
        .await;

    let res = engine
        .get(&format!(
            "/js/fetch?url={}",
            enc(&format!("{}/data", allowed.base))
        ))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "hello from upstream");

    let res = engine
        .client
        .post(engine.url(&format!(
            "/js/fetch?url={}",
            enc(&format!("{}/echo", allowed.base))
        )))
        .body("a body for upstream")
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 201);
    assert_eq!(body["body"], "got: a body for upstream");
    assert_eq!(allowed.hits.load(Ordering::SeqCst), 2);

    let denied_url = format!("{}/data", other.base);
    let res = engine
        .get(&format!("/js/fetch?url={}", enc(&denied_url)))
        .await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains(&denied_url), "{error}");
    assert!(error.contains("[outbound] allowed_hosts"), "{error}");
    assert_eq!(
        other.hits.load(Ordering::SeqCst),
        0,
        "the request left the host"
    );
    let port = other.base.rsplit(':').next().unwrap();
    // The engine's log reaches the harness through a pipe, a moment after
    // the answer: wait for the line rather than race it.
    let logged = kiln_e2e::wait_for(std::time::Duration::from_secs(5), || async {
        (!engine
            .log_lines_with(&["outbound request refused", "fixture-js", port])
            .is_empty())
        .then_some(())
    })
    .await;
    assert!(logged.is_some(), "{}", engine.log_text());
}

#[tokio::test]
async fn rust_plugins_get_the_same_allow_list_with_a_precise_error() {
    let allowed = upstream("rust upstream").await;
    let other = upstream("never").await;
    let settings = format!("[outbound]\nallowed_hosts = [{:?}]\n", allowed.base);
    let engine = Engine::builder()
        .plugin("fixture-outbound", "fixture-outbound", Some(&settings))
        .start()
        .await;

    let res = engine
        .get(&format!(
            "/outbound/fetch?url={}",
            enc(&format!("{}/data", allowed.base))
        ))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "rust upstream");

    let res = engine
        .client
        .post(engine.url(&format!(
            "/outbound/post?url={}",
            enc(&format!("{}/echo", allowed.base))
        )))
        .body("from rust")
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 201);
    assert_eq!(body["body"], "got: from rust");

    let res = engine
        .get(&format!(
            "/outbound/fetch?url={}",
            enc(&format!("{}/data", other.base))
        ))
        .await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("allowed_hosts"), "{message}");
    assert_eq!(other.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_plugin_without_allowed_hosts_reaches_nothing_and_a_bad_entry_refuses_the_plugin() {
    let up = upstream("x").await;
    let engine = Engine::builder()
        .plugin("fixture-js", "fixture-js", None)
        .plugin(
            "fixture-outbound",
            "fixture-outbound",
            Some("[outbound]\nallowed_hosts = [\"ftp://files.example\"]\n"),
        )
        .start()
        .await;
    let res = engine
        .get(&format!(
            "/js/fetch?url={}",
            enc(&format!("{}/data", up.base))
        ))
        .await;
    assert_eq!(res.status(), 502);
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    // The bad settings file keeps that plugin out, with the reason logged.
    assert_eq!(engine.get("/outbound/fetch?url=x").await.status(), 404);
    assert!(
        !engine
            .log_lines_with(&["fixture-outbound", "allowed_hosts", "ftp"])
            .is_empty(),
        "{}",
        engine.log_text()
    );
}

/// The load error the admin API reports for `<stem>.wasm`.
async fn load_error(e: &Engine, stem: &str) -> String {
    kiln_e2e::wait_for(std::time::Duration::from_secs(10), || async {
        let p = e.admin_plugin(stem).await?;
        p["last_error"].as_str().map(String::from)
    })
    .await
    .unwrap_or_else(|| panic!("no error reported for {stem}; log:\n{}", e.log_text()))
}

#[tokio::test]
async fn the_engines_outbound_ceiling_bounds_what_a_plugin_file_may_ask() {
    let inside = upstream("inside the ceiling").await;
    let outside = upstream("outside the ceiling").await;
    let ceiling = format!("[outbound]\nallowed_hosts = [{:?}]\n", inside.base);
    let engine = Engine::builder()
        .config(&ceiling)
        .plugin(
            "fixture-js",
            "fixture-js",
            Some(&format!(
                "[outbound]\nallowed_hosts = [{:?}]\n",
                inside.base
            )),
        )
        .plugin(
            "fixture-outbound",
            "fixture-outbound",
            Some(&format!(
                "[outbound]\nallowed_hosts = [{:?}, {:?}]\n",
                inside.base, outside.base
            )),
        )
        .start()
        .await;

    // Inside the ceiling: accepted, and it works.
    let res = engine
        .get(&format!(
            "/js/fetch?url={}",
            enc(&format!("{}/data", inside.base))
        ))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["body"], "inside the ceiling");

    // One entry outside: the plugin is refused, naming that entry and the
    // ceiling, and does not serve.
    let err = load_error(&engine, "fixture-outbound").await;
    let want = format!(
        "fixture-outbound.toml: outbound.allowed_hosts [{:?}] is outside the engine's ceiling \
         [{:?}] ([outbound] allowed_hosts)",
        outside.base, inside.base
    );
    assert!(err.contains(&want), "{err}\nwanted: {want}");
    assert!(
        err.contains("[plugins.fixture-outbound.outbound] allowed_hosts"),
        "{err}"
    );
    let res = engine
        .get(&format!(
            "/outbound/fetch?url={}",
            enc(&format!("{}/data", outside.base))
        ))
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(outside.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_operator_may_grant_hosts_beyond_the_outbound_ceiling() {
    let inside = upstream("inside").await;
    let beyond = upstream("granted by the operator").await;
    let engine = Engine::builder()
        .config(&format!(
            "[outbound]\nallowed_hosts = [{:?}]\n[plugins.fixture-outbound.outbound]\nallowed_hosts = [{:?}]\n",
            inside.base, beyond.base
        ))
        .plugin("fixture-outbound", "fixture-outbound", None)
        .start()
        .await;
    let res = engine
        .get(&format!(
            "/outbound/fetch?url={}",
            enc(&format!("{}/data", beyond.base))
        ))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["body"], "granted by the operator");
    // The operator's list replaces, it does not add the ceiling.
    let res = engine
        .get(&format!(
            "/outbound/fetch?url={}",
            enc(&format!("{}/data", inside.base))
        ))
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(inside.hits.load(Ordering::SeqCst), 0);
}
