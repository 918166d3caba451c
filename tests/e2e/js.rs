//! JavaScript plugins, built with `kiln build` from `examples/hello-js` and
//! `tests/fixtures-js/fixture-js`: served over HTTP, GraphQL and MCP like a
//! Rust plugin, stopped by the limits, crashing cleanly, reusing warm
//! instances (or not), and made from an empty folder with `kiln new --lang js`.

use std::process::Command;
use std::time::Duration;

use kiln_e2e::{Engine, error_of, kiln_bin, wait_for, workspace_root};
use serde_json::{Value, json};

use crate::mcp::{call, first_text, rmcp_client};

#[tokio::test]
async fn a_js_plugin_serves_routes_graphql_fields_and_mcp_tools() {
    let engine = Engine::builder()
        .plugin("hello-js", "hello-js", None)
        .start()
        .await;

    let res = engine.get("/hello-js/ada").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "message": "Hello, ada!", "from": "javascript" })
    );

    let res = engine
        .client
        .post(engine.url("/hello-js/echo"))
        .body(r#"{"n": 1, "list": [true]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "echo": { "n": 1, "list": [true] } })
    );
    // Bad input is the client's fault, said precisely: a 400, not a crash.
    let res = engine
        .client
        .post(engine.url("/hello-js/echo"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{body}"
    );

    let res = engine
        .client
        .post(engine.url("/graphql"))
        .json(&json!({ "query": r#"{ a: helloJs(name: "grace") b: helloJs }"# }))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["data"],
        json!({ "a": "Hello, grace!", "b": "Hello, world!" }),
        "{body}"
    );

    let client = rmcp_client(&engine, None).await;
    let tools = client.list_all_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "word_count")
        .expect("word_count listed");
    assert_eq!(tool.input_schema["required"], json!(["text"]));
    let result = call(&client, "word_count", json!({ "text": "one two  three ü" }))
        .await
        .unwrap();
    assert_eq!(
        result.structured_content,
        Some(json!({ "words": 4, "characters": 16 }))
    );
    assert!(first_text(&result).contains("\"words\":4"));
    // The input schema is enforced before the plugin runs.
    let refused = call(&client, "word_count", json!({ "text": 5 })).await;
    assert!(
        refused.is_err() || refused.as_ref().unwrap().is_error == Some(true),
        "{refused:?}"
    );
    client.cancel().await.unwrap();
}

/// An engine serving `tests/fixtures-js/fixture-js` with `settings` beside it.
async fn fixture_js(settings: Option<&str>) -> Engine {
    Engine::builder()
        .plugin("fixture-js", "fixture-js", settings)
        .start()
        .await
}

#[tokio::test]
async fn an_endless_js_loop_is_stopped_by_fuel_or_the_deadline_and_the_plugin_keeps_serving() {
    let engine = fixture_js(Some("[limits]\nfuel = 200000000\n")).await;
    let (status, code, message) = error_of(engine.get("/js/loop").await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "plugin_cpu_limit"),
        "{message}"
    );
    assert!(message.contains("fixture-js"), "{message}");
    // The instance that ran out is gone; the next call gets a good one.
    assert_eq!(engine.get("/js/hello").await.status(), 200);

    let engine = Engine::builder()
        .runtime("cpu_limit = \"epoch\"")
        .plugin(
            "fixture-js",
            "fixture-js",
            Some("[limits]\ntimeout_ms = 300\n"),
        )
        .start()
        .await;
    let (status, code, message) = error_of(engine.get("/js/loop").await).await;
    assert_eq!(
        (status, code.as_str()),
        (504, "plugin_timeout"),
        "{message}"
    );
    assert!(message.contains("300 ms"), "{message}");
    assert_eq!(engine.get("/js/hello").await.status(), 200);
}

#[tokio::test]
async fn a_js_plugin_that_grows_past_the_memory_cap_is_stopped_and_named() {
    // More fuel than the built-in ceiling, so that memory runs out first:
    // the operator's to give.
    let engine = Engine::builder()
        .config("[plugins.fixture-js.limits]\nfuel = 5000000000")
        .plugin(
            "fixture-js",
            "fixture-js",
            Some("[limits]\nmemory = \"64MiB\"\n"),
        )
        .start()
        .await;
    let (status, code, message) = error_of(engine.get("/js/hog").await).await;
    // SpiderMonkey meets the refusal as an out-of-memory error or aborts;
    // either way the answer names the cap, from the limiter's record.
    assert_eq!(
        (status, code.as_str()),
        (500, "plugin_memory_limit"),
        "{message}"
    );
    assert!(message.contains("fixture-js"), "{message}");
    assert!(message.contains("67108864 bytes"), "{message}");
    // That instance is discarded, not returned to the warm pool.
    assert_eq!(engine.get("/js/hello").await.status(), 200);
}

#[tokio::test]
async fn a_js_exception_is_a_clean_500_naming_the_plugin_and_a_kiln_error_is_the_plugins_answer() {
    let engine = fixture_js(None).await;
    let res = engine.get("/js/throw").await;
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "plugin_crashed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("plugin 'fixture-js' crashed"), "{message}");
    // The exception stays in the log, under the request id, not in the answer.
    assert!(!message.contains("kaboom"), "{message}");
    let request_id = body["error"]["request_id"].as_str().unwrap().to_string();
    // The engine's log reaches the harness through a pipe, a moment after
    // the answer: wait for the line rather than race it.
    let lines = kiln_e2e::wait_for(Duration::from_secs(5), || async {
        let lines = engine.log_lines_with(&[&request_id, "kaboom from js"]);
        (!lines.is_empty()).then_some(lines)
    })
    .await
    .unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Uncaught exception in GET /js/throw: Error: kaboom from js")),
        "{lines:?}"
    );

    let res = engine.get("/js/not-found").await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["message"], "no such thing");

    // The SDK's host wrappers: KV round trip, config, caller.
    let res = engine
        .client
        .put(engine.url("/js/kv/k1"))
        .body(r#"{"x": [1, 2]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = engine.get("/js/kv/k1").await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "x": [1, 2] }));
    assert_eq!(engine.get("/js/kv/missing").await.status(), 404);
    let res = engine.get("/js/whoami").await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "caller": null })
    );
}

async fn calls(engine: &Engine) -> u64 {
    let res = engine.get("/js/calls").await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["calls"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn js_plugins_reuse_warm_instances_up_to_max_uses_and_fresh_mode_keeps_nothing() {
    // Default (auto): a JavaScript component runs warm, so module state
    // carries over; max_uses retires an instance after that many calls.
    let engine = fixture_js(Some("[limits]\nmax_uses = 3\n")).await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(calls(&engine).await);
    }
    assert_eq!(seen, vec![1, 2, 3, 1, 2, 3, 1]);
    // A crash discards the instance: the count starts over.
    assert_eq!(engine.get("/js/throw").await.status(), 500);
    assert_eq!(calls(&engine).await, 1);

    let engine = fixture_js(Some("[limits]\ninstances = \"fresh\"\n")).await;
    for _ in 0..3 {
        assert_eq!(calls(&engine).await, 1);
    }
}

async fn instances(engine: &Engine) -> Value {
    let plugin = engine.admin_plugin("fixture-js").await;
    plugin.expect("fixture-js is listed")["instances"].clone()
}

#[tokio::test]
async fn warm_instances_nobody_takes_are_released_after_the_idle_timeout() {
    let engine = fixture_js(Some("[limits]\nidle_timeout_ms = 1500\n")).await;
    assert_eq!(calls(&engine).await, 1);
    assert_eq!(calls(&engine).await, 2);
    // Right after a call its instance waits in the pool ...
    assert_eq!(
        instances(&engine).await,
        json!({ "reuse": "warm", "idle": 1 })
    );
    // ... and is released once it has waited past the timeout (checked
    // every second), so the next call starts over on a new instance.
    let released = kiln_e2e::wait_for(Duration::from_secs(6), || async {
        (instances(&engine).await["idle"] == 0).then_some(())
    })
    .await;
    assert!(released.is_some(), "{}", instances(&engine).await);
    assert_eq!(calls(&engine).await, 1);

    let engine = fixture_js(Some("[limits]\ninstances = \"fresh\"\n")).await;
    assert_eq!(instances(&engine).await, json!({ "reuse": "fresh" }));
}

#[tokio::test]
async fn a_restart_maps_the_compiled_js_plugin_from_the_cache() {
    let mut engine = Engine::builder()
        .own_cache()
        .plugin("hello-js", "hello-js", None)
        .start()
        .await;
    assert!(
        !engine
            .log_lines_with(&["plugin loaded", "hello-js", "cache=Compiled"])
            .is_empty(),
        "{}",
        engine.log_text()
    );
    engine.restart();
    assert!(
        !engine
            .log_lines_with(&["plugin loaded", "hello-js", "cache=Hit"])
            .is_empty(),
        "{}",
        engine.log_text()
    );
    assert_eq!(engine.get("/hello-js/again").await.status(), 200);
}

#[tokio::test]
async fn kiln_new_lang_js_then_kiln_build_gives_a_plugin_the_engine_serves() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("my-js-api");
    let out = Command::new(kiln_bin())
        .args(["new", "my-js-api", "--lang", "js", "--dir"])
        .arg(&dir)
        .env("KILN_SDK_PATH", workspace_root().join("sdk-guest"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("index.js").is_file() && dir.join("jsconfig.json").is_file());

    let engine = Engine::builder().start().await;
    let out = Command::new(kiln_bin())
        .arg("build")
        .arg(&dir)
        .arg("--plugins")
        .arg(engine.plugins_dir())
        .env("KILN_SDK_PATH", workspace_root().join("sdk-guest"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(engine.plugins_dir().join("my-js-api.toml").is_file());

    // A bound for a busy machine, not a speed target: a fresh JS component
    // compiles in a debug engine beside the rest of the suite.
    let served = kiln_e2e::wait_for(std::time::Duration::from_secs(300), || async {
        let res = engine.get("/greet/lin").await;
        (res.status() == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "{}", engine.log_text());
    let res = engine
        .client
        .post(engine.url("/greet"))
        .json(&json!({ "name": "kim" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "message": "Hello, kim!" })
    );
    let res = engine
        .client
        .post(engine.url("/greet"))
        .json(&json!({ "nom": "kim" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_big_compile_is_visible_as_loading_and_other_plugins_keep_answering() {
    // Its own compile cache: the component is compiled, not mapped.
    let engine = Engine::builder()
        .own_cache()
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    engine.install("fixture-js", &kiln_e2e::fixture("fixture-js"));
    // While it compiles the admin API says so, with the hash it tries.
    let loading = wait_for(Duration::from_secs(60), || async {
        let status = engine.admin_plugin("fixture-js").await?;
        (status["state"] == "loading").then_some(status)
    })
    .await
    .expect("a loading state while the compile runs");
    assert_eq!(
        loading["loading"]["attempted_hash"].as_str().map(str::len),
        Some(64),
        "{loading}"
    );
    assert!(loading["loading"]["bytes"].as_u64().unwrap() > 1_000_000);
    // Other plugins answer meanwhile: the compile runs off the async workers.
    let started = std::time::Instant::now();
    assert_eq!(engine.get("/hello/ada").await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let active = wait_for(Duration::from_secs(120), || async {
        let status = engine.admin_plugin("fixture-js").await?;
        (status["state"] == "active").then_some(status)
    })
    .await
    .expect("the plugin loads");
    assert!(active.get("loading").is_none(), "{active}");
    // The log says when the compile started, how big, and how long it took.
    let start = engine.log_lines_with(&["compiling fixture-js.wasm (", "MB)…"]);
    assert_eq!(start.len(), 1, "{start:?}");
    let end = engine.log_lines_with(&["compiled fixture-js.wasm in ", " ms"]);
    assert_eq!(end.len(), 1, "{end:?}");
}

#[tokio::test]
async fn a_js_plugin_learns_who_it_is_and_how_long_its_call_has_left() {
    let engine = fixture_js(Some("[limits]\ntimeout_ms = 4000\n")).await;
    let res = engine
        .get_with_request_id("/js/runtime", "js-who-am-i")
        .await;
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["pluginName"], "fixture-js", "{info}");
    assert_eq!(info["engineName"], "kiln", "{info}");
    assert_eq!(info["engineVersion"], env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(info["requestId"], "js-who-am-i", "{info}");
    let left = info["timeLeftMs"].as_u64().unwrap();
    assert!((1000..=4000).contains(&left), "{info}");
}

/// A JavaScript plugin prices its own route (`router.price`) and charges
/// within the hold (`billing.charge`), through the same host as Rust.
#[tokio::test]
async fn a_js_plugin_prices_its_route_and_charges_within_the_hold() {
    let engine = fixture_js(None).await;
    let out = engine.cli(&["keys", "create", "--name", "js-payer"]);
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let credit = engine.cli(&["billing", "credit", "key:js-payer", "2000"]);
    assert!(credit.status.success());
    let call = |query: &'static str| {
        let url = engine.url(&format!("/js/metered{query}"));
        let key = key.clone();
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = call("?charges=100,150,300").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"],
        json!([{ "total": 100 }, { "total": 250 }, { "error": "exceeds-hold", "held": 500, "charged": 250 }]),
        "{body}"
    );
    assert_eq!(body["funds"]["account"], "key:js-payer", "{body}");
    assert_eq!(body["funds"]["heldMicros"], 500, "{body}");
    assert_eq!(body["funds"]["availableMicros"], 1500, "{body}");
    // No charge: the declared price.
    let (status, _) = call("").await;
    assert_eq!(status, 200);
    let me: Value = reqwest::Client::new()
        .get(engine.url("/_kiln/v1/billing/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["pending_micros"], 750, "{me}");
    let unpriced: Value = reqwest::Client::new()
        .get(engine.url("/js/unpriced-charge"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unpriced, json!({ "error": "not-priced" }));
}
