use kiln_e2e::{Engine, Value, json};

async fn basic() -> Engine {
    Engine::builder()
        .config("[http]\nmax_request_body = \"1KiB\"\nmax_response_body = \"64KiB\"")
        .plugin(
            "basic",
            "fixture-basic",
            Some("[config]\ncolour = \"blue\""),
        )
        .plugin("hello", "hello-rust", None)
        .start()
        .await
}

#[tokio::test]
async fn hello_example_greets_and_echoes() {
    let e = basic().await;
    let r = e.get("/hello/Kiln").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Hello, Kiln!"})
    );

    let r = e
        .client
        .post(e.url("/echo"))
        .json(&json!({"a": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"echo": {"a": [1, 2]}})
    );

    let r = e
        .client
        .post(e.url("/echo"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[tokio::test]
async fn params_query_headers_and_methods_reach_the_plugin() {
    let e = basic().await;
    let r = e
        .client
        .get(e.url("/basic/items/J%C3%B6rg?q=a+b&z=1"))
        .header("X-Test", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-plugin"], "basic");
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "Jörg");
    assert_eq!(v["q"], "a b");
    assert_eq!(v["x_test"], "yes");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/basic/items/J%C3%B6rg");

    let r = e
        .client
        .post(e.url("/basic/items"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"created": {"n": 1}})
    );

    let r = e
        .client
        .put(e.url("/basic/items/9"))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"put": "9", "len": 3})
    );

    let r = e
        .client
        .delete(e.url("/basic/items/9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let r = e.get("/basic/files/a/b/c.txt").await;
    assert_eq!(r.text().await.unwrap(), "a/b/c.txt");

    let r = e.get("/basic/status/418").await;
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-custom"], "yes");

    let r = e.get("/basic/config/colour").await;
    assert_eq!(r.text().await.unwrap(), "blue");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let e = basic().await;
    let r = e.get("/nothing/here").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert!(v["error"]["request_id"].is_string());

    let r = e
        .client
        .patch(e.url("/basic/items/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "DELETE, GET, HEAD, PUT");

    // The wildcard needs at least one character.
    assert_eq!(e.get("/basic/files/").await.status(), 404);
    // Reserved prefixes never reach plugins: the host answers them.
    let r = e.get("/graphql").await;
    assert_eq!(r.status(), 400, "GraphQL wants a query");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no \"query\""),
        "{v}"
    );
    assert_eq!(e.get("/graphql/other").await.status(), 404);
    // /mcp is the MCP endpoint: a plain GET (no event-stream Accept) is 406.
    assert_eq!(e.get("/mcp").await.status(), 406);
    assert_eq!(e.get("/mcp/other").await.status(), 404);
    assert_eq!(e.get("/_kiln/v1/nope").await.status(), 404);
}

#[tokio::test]
async fn head_is_served_by_get_without_a_body() {
    let e = basic().await;
    let full = e.get("/hello/x").await.bytes().await.unwrap();
    let r = e.client.head(e.url("/hello/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        full.len().to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_413() {
    let e = basic().await;
    let big = vec![b'x'; 2048];
    let r = e
        .client
        .put(e.url("/basic/items/1"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The unread rest of the body makes the connection unusable: say so.
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );

    // Without a Content-Length (chunked), the limit applies while reading.
    let stream = futures_stream(big);
    let r = e
        .client
        .put(e.url("/basic/items/1"))
        .body(kiln_e2e::reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // At the limit is fine.
    let r = e
        .client
        .put(e.url("/basic/items/1"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn futures_stream(
    data: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(256).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn plugin_errors_and_bad_responses_are_clear() {
    let e = basic().await;
    let r = e.get("/basic/fail").await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "conflict");
    assert_eq!(v["error"]["message"], "this item is locked");

    let r = e.get("/basic/bad-header").await;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "plugin_bad_response");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fixture-basic")
    );

    let r = e.get("/basic/status/1000").await;
    assert_eq!(r.status(), 500);

    // Responses over http.max_response_body (64KiB) are refused.
    assert_eq!(e.get("/basic/bytes/65536").await.status(), 200);
    let r = e.get("/basic/bytes/70000").await;
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("exceeds the limit"));
}

#[tokio::test]
async fn plugin_log_lines_carry_plugin_and_request_id() {
    let e = basic().await;
    let r = e.get_with_request_id("/basic/log", "trace-me-42").await;
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let found = kiln_e2e::wait_for(std::time::Duration::from_secs(5), || async {
        let lines = e.log_lines_with(&["basic fixture says hi", "fixture-basic", "trace-me-42"]);
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert!(found.is_some(), "log:\n{}", e.log_text());
}

#[tokio::test]
async fn secrets_come_from_the_named_environment_variable_and_never_from_config() {
    let value = "s3cret-value-for-the-test";
    let e = Engine::builder()
        .env("KILN_TEST_API_KEY", value)
        .plugin(
            "basic",
            "fixture-basic",
            Some("[config]\ncolour = \"blue\""),
        )
        .plugin("needs-secret", "fixture-configurable", None)
        // Only the operator maps secrets to environment variables.
        .config("[plugins.basic.secrets]\napi_key = \"KILN_TEST_API_KEY\"")
        .config("[plugins.needs-secret.secrets]\ntoken = \"KILN_TEST_UNSET_VARIABLE\"")
        .start()
        .await;
    let r = e.get("/basic/secret/api_key").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), value);
    // A secret is not a setting, and an unknown secret is absent.
    assert_eq!(e.get("/basic/config/api_key").await.status(), 404);
    assert_eq!(e.get("/basic/secret/colour").await.status(), 404);

    // A secret whose variable is missing refuses the plugin, naming both.
    let status = kiln_e2e::wait_for(std::time::Duration::from_secs(10), || async {
        e.admin_plugin("needs-secret")
            .await
            .filter(|p| p["last_error"].is_string())
    })
    .await
    .expect("the missing secret was not reported");
    let err = status["last_error"].as_str().unwrap();
    assert!(
        err.contains("'token'") && err.contains("KILN_TEST_UNSET_VARIABLE"),
        "{err}"
    );
    // Secrets appear neither in the admin listing nor in the log.
    assert!(!e.admin_plugins().await.to_string().contains(value));
    assert!(!e.log_text().contains(value));
}

/// `kiln:plugin/runtime-info` tells a plugin its own checked name and
/// version, the engine's, the request it serves and the time it has left.
#[tokio::test]
async fn a_plugin_learns_who_it_is_and_how_long_its_call_has_left() {
    let e = Engine::builder()
        .plugin(
            "basic",
            "fixture-basic",
            Some("[limits]\ntimeout_ms = 3000"),
        )
        .start()
        .await;
    let r = e.get_with_request_id("/basic/runtime", "who-am-i-7").await;
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["plugin_name"], "fixture-basic", "{info}");
    assert_eq!(info["plugin_version"], "0.1.0", "{info}");
    assert_eq!(info["engine_name"], "kiln", "{info}");
    assert_eq!(info["engine_version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(info["request_id"], "who-am-i-7", "{info}");
    // The call's own deadline, not a constant: under the 3 s timeout and
    // most of it still left.
    let left = info["time_left_ms"].as_u64().unwrap();
    assert!((1000..=3000).contains(&left), "{info}");
}

/// With `KILN_LOG=debug` every line of a request sits in its `request`
/// span and, inside a plugin call, in a `plugin_call` span naming the
/// plugin, the export and the handler: no id is passed by hand.
#[tokio::test]
async fn debug_logs_carry_the_request_and_plugin_call_spans() {
    let e = Engine::builder()
        .env("KILN_LOG", "info,kiln=debug")
        .plugin("basic", "fixture-basic", None)
        .start()
        .await;
    let r = e.get_with_request_id("/basic/log", "span-me-9").await;
    assert_eq!(r.status(), 200);
    let found = kiln_e2e::wait_for(std::time::Duration::from_secs(5), || async {
        let lines = e.log_lines_with(&[
            "basic fixture says hi",
            "request{request_id=span-me-9 method=GET path=/basic/log}",
            "plugin_call{plugin=fixture-basic export=\"kiln:plugin/http-handler\" operation=GET /basic/log",
        ]);
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert!(found.is_some(), "log:\n{}", e.log_text());
    // Every call ends with a line that says how, inside its span.
    let r = e.get_with_request_id("/basic/fail", "span-me-10").await;
    assert_eq!(r.status(), 409);
    for (request_id, outcome) in [("span-me-9", "ok"), ("span-me-10", "plugin_error")] {
        let (request, ended) = (
            format!("request{{request_id={request_id} "),
            format!("outcome={outcome} "),
        );
        let found = kiln_e2e::wait_for(std::time::Duration::from_secs(5), || async {
            let lines = e.log_lines_with(&[
                &request,
                "plugin_call{plugin=fixture-basic",
                "plugin call ended",
                &ended,
                "instance=",
            ]);
            (!lines.is_empty()).then_some(lines)
        })
        .await;
        assert!(found.is_some(), "{outcome}: log:\n{}", e.log_text());
    }
}

/// A fresh instance per call (the default) starts from the module's image:
/// neither a static nor heap memory the last call dirtied survives — what
/// the pooling allocator's reset (only the dirtied pages, found with
/// PAGEMAP_SCAN where the kernel has it) must guarantee. Warm instances do
/// keep both, which proves the test can tell.
#[tokio::test]
async fn a_fresh_instance_keeps_nothing_of_the_call_before() {
    let e = Engine::builder()
        .plugin("basic", "fixture-basic", None)
        .start()
        .await;
    for _ in 0..5 {
        let body: kiln_e2e::Value = e.get("/basic/remembered").await.json().await.unwrap();
        assert_eq!(body, json!({ "calls": 1, "marked_bytes_before": 0 }));
    }
    let e = Engine::builder()
        .plugin(
            "basic",
            "fixture-basic",
            Some("[limits]\ninstances = \"warm\"\nwarm_instances = 1\nmax_concurrency = 1\n"),
        )
        .start()
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let body: kiln_e2e::Value = e.get("/basic/remembered").await.json().await.unwrap();
        seen.push((body["calls"].clone(), body["marked_bytes_before"].clone()));
    }
    assert_eq!(
        seen,
        vec![
            (json!(1), json!(0)),
            (json!(2), json!(65536)),
            (json!(3), json!(131072))
        ]
    );
}
