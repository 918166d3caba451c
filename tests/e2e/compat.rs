//! Plugins built before a change keep working after it: every component
//! kept in `tests/compat/<date>/` (built from the examples on that date and
//! never rebuilt) is loaded and called through its front doors.

use kiln_e2e::{Engine, json, workspace_root};

/// The folders of kept components, oldest first.
fn kept() -> Vec<std::path::PathBuf> {
    let dir = workspace_root().join("tests/compat");
    let mut folders: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/compat")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(
        !folders.is_empty(),
        "no kept components in {}",
        dir.display()
    );
    folders
}

#[tokio::test]
async fn components_built_before_today_load_and_serve_unchanged() {
    for folder in kept() {
        let at = folder.display().to_string();
        let mut builder = Engine::builder();
        for stem in ["hello-rust", "catalog-rust", "tools-rust", "hello-js"] {
            builder = builder.plugin_file(stem, folder.join(format!("{stem}.wasm")));
        }
        let e = builder.start().await;
        // Wait until every file has settled (compiled and loaded, or
        // refused), then require all four active. A fresh checkout compiles
        // the old JavaScript component (12 MB) in a debug engine while the
        // other tests run beside it: that took over two minutes on a busy CI
        // machine, so the bound is generous and a refusal still fails fast.
        let settled = kiln_e2e::wait_for(std::time::Duration::from_secs(600), || async {
            let all = e.admin_plugins().await;
            let plugins = all["plugins"].as_array()?.clone();
            (plugins.len() == 4 && plugins.iter().all(|p| p["state"] != "loading"))
                .then_some(plugins)
        })
        .await;
        let Some(plugins) = settled else {
            panic!(
                "{at}: still loading after 600 s: {}",
                e.admin_plugins().await
            )
        };
        assert!(
            plugins.iter().all(|p| p["state"] == "active"),
            "{at}: {plugins:?}"
        );

        // Routes, Rust and JavaScript.
        let r = e.get("/hello/ada").await;
        assert_eq!(r.status(), 200, "{at}");
        assert_eq!(
            r.json::<kiln_e2e::Value>().await.unwrap()["message"],
            "Hello, ada!"
        );
        let r = e.get("/hello-js/Ada").await;
        assert_eq!(r.status(), 200, "{at}");
        assert_eq!(
            r.json::<kiln_e2e::Value>().await.unwrap(),
            json!({ "message": "Hello, Ada!", "from": "javascript" })
        );
        // GraphQL from three plugins in one query, and a mutation.
        let data = e
            .graphql_ok(
                r#"mutation { addProduct(input: {sku: "tea", name: "Tea"}) { sku } }"#,
                json!({}),
            )
            .await;
        assert_eq!(data["addProduct"]["sku"], "tea", "{at}");
        let data = e
            .graphql_ok(
                r#"{ hello(name: "a") helloJs(name: "b") products { sku name } }"#,
                json!({}),
            )
            .await;
        assert_eq!(data["hello"], "Hello, a!", "{at}");
        assert_eq!(
            data["products"],
            json!([{ "sku": "tea", "name": "Tea" }]),
            "{at}"
        );
        assert!(
            data["helloJs"].as_str().is_some_and(|s| s.contains('b')),
            "{at}: {data}"
        );
        // MCP: the tools are listed and one is called.
        let client = crate::mcp::rmcp_client(&e, None).await;
        let tools = client.list_all_tools().await.expect("tools/list");
        assert!(
            tools.iter().any(|t| t.name == "math.stats"),
            "{at}: {tools:?}"
        );
        let stats = crate::mcp::call(&client, "math.stats", json!({ "numbers": [3, 1, 2] }))
            .await
            .expect("tools/call");
        assert_eq!(stats.is_error, Some(false), "{at}: {stats:?}");
    }
}
