//! MCP at `/mcp`: the official TypeScript SDK client and the `rmcp` client
//! list and call the fixture plugin's tools and prompts, the conformance
//! suite runs against it, and the header guards refuse what they must.

use std::time::Duration;

use kiln_e2e::{Engine, NodeClient, fixture, js_clients, wait_for};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    GetPromptRequestParams, Implementation, ProtocolVersion,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServiceError, ServiceExt};
use serde_json::{Value, json};

/// A fresh API key with the `reader` role (the role `echo` declares).
fn reader_key(engine: &Engine) -> String {
    let name = format!("reader-{}", uuid::Uuid::new_v4().simple());
    let out = engine.cli(&["keys", "create", "--name", &name, "--roles", "reader"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn engine() -> Engine {
    Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .start()
        .await
}

/// The lines of a Node client, parsed, by step name.
fn step(lines: &[String], name: &str) -> Option<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["step"] == name)
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_typescript_sdk_client_lists_calls_and_hears_list_changes() {
    let engine = engine().await;
    let key = reader_key(&engine);
    let client = NodeClient::start("mcp-client.mjs", &[&engine.url("/mcp"), "60000", &key]);
    let ready = wait_for(Duration::from_secs(30), || {
        let lines = client.lines();
        async move { step(&lines, "ready").map(|_| lines) }
    })
    .await;
    let lines = ready.unwrap_or_else(|| panic!("the client did not finish: {:?}", client.lines()));

    let connected = step(&lines, "connected").unwrap();
    assert_eq!(connected["protocol"], "2025-11-25", "{connected}");
    assert_eq!(connected["session"], true);
    assert_eq!(connected["server"]["name"], "kiln");
    assert_eq!(connected["capabilities"]["tools"]["listChanged"], true);

    let tools = step(&lines, "tools").unwrap()["tools"].clone();
    let echo = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap_or_else(|| panic!("no echo tool in {tools}"));
    assert_eq!(echo["title"], "Echo");
    assert_eq!(echo["inputSchema"]["required"], json!(["text"]));
    assert_eq!(echo["annotations"]["readOnlyHint"], true);
    let stats = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "stats")
        .unwrap();
    assert_eq!(stats["outputSchema"]["required"], json!(["sum", "count"]));

    let echo = &step(&lines, "echo").unwrap()["result"];
    assert_eq!(text_of(echo), "hi hi");
    assert_eq!(echo["isError"], false);

    // Checked against the schema before the plugin runs, naming the field.
    let bad = &step(&lines, "bad_arguments").unwrap()["result"];
    assert_eq!(bad["isError"], true);
    assert_eq!(
        text_of(bad),
        "invalid arguments for tool 'echo': /times: 9 is greater than the maximum of 5"
    );

    let stats = &step(&lines, "stats").unwrap()["result"];
    assert_eq!(
        stats["structuredContent"],
        json!({ "sum": 6.5, "count": 3 })
    );

    let progress = step(&lines, "progress").unwrap();
    let seen: Vec<(f64, f64)> = progress["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["progress"].as_f64().unwrap(),
                p["total"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, vec![(0.0, 100.0), (50.0, 100.0), (100.0, 100.0)]);

    // After setLevel(debug) the debug line comes through too, in order.
    let logs: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["step"] == "log")
        .map(|v| {
            format!(
                "{} {} {}",
                v["logger"].as_str().unwrap(),
                v["level"].as_str().unwrap(),
                v["data"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        logs,
        vec![
            "fixture-mcp info Tool execution started",
            "fixture-mcp info Tool processing data",
            "fixture-mcp info Tool execution completed",
            "fixture-mcp debug debug detail",
        ]
    );

    // A trap is an error result; the session survives it. The panic
    // message stays in the engine's log (outside dev mode).
    let crash = &step(&lines, "crash").unwrap()["result"];
    assert_eq!(crash["isError"], true);
    let text = text_of(crash);
    assert!(
        text.contains("crashed; the engine log has the details"),
        "{crash}"
    );
    assert!(!text.contains("as asked"), "{crash}");
    let logged = kiln_e2e::wait_for(std::time::Duration::from_secs(5), || async {
        (!engine
            .log_lines_with(&["the crash tool crashed, as asked"])
            .is_empty())
        .then_some(())
    })
    .await;
    assert!(logged.is_some(), "the panic message is in the log");
    let unknown = &step(&lines, "unknown_tool").unwrap()["error"];
    assert_eq!(unknown["code"], -32602);
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("unknown tool 'no_such_tool'")
    );

    let prompts = step(&lines, "prompts").unwrap()["prompts"].clone();
    let greeting = prompts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "greeting")
        .unwrap();
    assert_eq!(
        greeting["arguments"][0],
        json!({ "name": "name", "description": "Whom to greet", "required": true })
    );
    let rendered = &step(&lines, "greeting").unwrap()["result"];
    assert_eq!(rendered["description"], "A greeting for Ada");
    assert_eq!(
        rendered["messages"][0]["content"]["text"],
        "Write a formal letter greeting Ada."
    );
    let missing = &step(&lines, "missing_argument").unwrap()["error"];
    assert_eq!(missing["code"], -32602);
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("needs argument 'name'")
    );

    // Adding a plugin announces its tools and prompts; removing it takes
    // them away again.
    engine.install("tools-rust", &fixture("tools-rust"));
    let added = wait_for(Duration::from_secs(30), || {
        let lines = client.lines();
        async move {
            let changed = step(&lines, "tools_changed")?;
            let prompts = step(&lines, "prompts_changed")?;
            Some((changed, prompts))
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no list_changed after adding a plugin: {:?}",
            client.lines()
        )
    });
    assert!(
        added.0["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("math.stats")),
        "{}",
        added.0
    );
    assert!(
        added.1["prompts"]
            .as_array()
            .unwrap()
            .contains(&json!("review-memos")),
        "{}",
        added.1
    );

    std::fs::remove_file(engine.plugins_dir().join("tools-rust.wasm")).unwrap();
    let removed = wait_for(Duration::from_secs(30), || {
        let lines = client.lines();
        async move {
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["step"] == "tools_changed")
                .nth(1)
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no list_changed after removing a plugin: {:?}",
            client.lines()
        )
    });
    assert!(
        !removed["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("math.stats")),
        "{removed}"
    );
    assert!(
        removed["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("echo")),
        "{removed}"
    );
}

pub(crate) async fn rmcp_client(
    engine: &Engine,
    version: Option<ProtocolVersion>,
) -> RunningService<RoleClient, ClientConfig> {
    // `echo` declares the `reader` role, which holds even under the
    // harness's public default: the clients here are readers.
    let transport = StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            engine.url("/mcp"),
        )
        .auth_header(reader_key(engine)),
    );
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("kiln-e2e-rmcp", "1.0.0"),
    );
    match version {
        // The stateless revision has no `initialize`: the client discovers.
        Some(version) if version == ProtocolVersion::V_2026_07_28 => info
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![version],
                },
            )
            .await
            .expect("the rmcp client discovers the server"),
        Some(version) => info
            .with_protocol_version(version)
            .serve(transport)
            .await
            .expect("the rmcp client connects"),
        None => info
            .serve(transport)
            .await
            .expect("the rmcp client connects"),
    }
}

pub(crate) async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(arguments))
        .await
}

async fn prompt(
    client: &RunningService<RoleClient, ClientConfig>,
    name: &str,
    arguments: Value,
) -> Result<rmcp::model::GetPromptResult, ServiceError> {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .get_prompt(GetPromptRequestParams::new(name).with_arguments(arguments))
        .await
}

pub(crate) fn first_text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_rmcp_client_calls_tools_and_prompts_on_every_protocol_version() {
    let engine = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        // A short timeout so the looping tool is stopped quickly.
        .config("[limits]\ntimeout_ms = 500\n")
        .start()
        .await;
    for version in [
        ProtocolVersion::V_2025_06_18,
        ProtocolVersion::V_2025_11_25,
        ProtocolVersion::V_2026_07_28,
    ] {
        let client = rmcp_client(&engine, Some(version.clone())).await;
        let negotiated = client.peer_info().map(|i| i.protocol_version.clone());
        assert_eq!(
            negotiated.as_ref(),
            Some(&version),
            "negotiated {negotiated:?}"
        );

        let tools = client.list_all_tools().await.unwrap();
        assert!(
            tools.iter().any(|t| t.name == "echo"),
            "{version}: {tools:?}"
        );
        let prompts = client.list_all_prompts().await.unwrap();
        assert!(prompts.iter().any(|p| p.name == "greeting"), "{version}");

        let echo = call(&client, "echo", json!({ "text": "x", "times": 3 }))
            .await
            .unwrap();
        assert_eq!(first_text(&echo), "x x x", "{version}");

        let bad = call(&client, "echo", json!({ "times": 2, "extra": 1 }))
            .await
            .unwrap();
        assert_eq!(bad.is_error, Some(true));
        let message = first_text(&bad);
        assert!(
            message.contains("\"text\" is a required property"),
            "{message}"
        );
        assert!(message.contains("extra"), "{message}");

        let spin = call(&client, "spin", json!({})).await.unwrap();
        assert_eq!(spin.is_error, Some(true));
        // Whichever limit stops it first: fuel or the deadline.
        let message = first_text(&spin);
        assert!(
            message == "tool 'spin' failed: plugin 'fixture-mcp' timed out after 500 ms"
                || message.starts_with("tool 'spin' failed: plugin 'fixture-mcp' ran out of fuel"),
            "{message}"
        );

        let refuse = call(&client, "refuse", json!({})).await.unwrap();
        assert_eq!(refuse.is_error, Some(true));
        assert_eq!(first_text(&refuse), "there is no such record");

        let broken = call(
            &client,
            "stats",
            json!({ "numbers": [1], "break_contract": true }),
        )
        .await
        .unwrap();
        assert_eq!(broken.is_error, Some(true));
        let message = first_text(&broken);
        assert!(
            message.contains("does not match its output schema: /count"),
            "{message}"
        );

        let image = call(&client, "test_image_content", json!({}))
            .await
            .unwrap();
        let image = image.content[0].as_image().expect("an image block");
        assert_eq!(image.mime_type, "image/png");
        assert!(
            image.data.starts_with("iVBORw0KGgo"),
            "base64 of a PNG: {}",
            image.data
        );

        let rendered = prompt(
            &client,
            "test_prompt_with_arguments",
            json!({ "arg1": "hello", "arg2": "world" }),
        )
        .await
        .unwrap();
        let text = serde_json::to_value(&rendered.messages[0].content).unwrap();
        assert_eq!(
            text["text"],
            "Prompt with arguments: arg1='hello', arg2='world'"
        );

        let unknown_argument = prompt(&client, "greeting", json!({ "name": "A", "mood": "x" }))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            unknown_argument
                .contains("prompt 'greeting' has no argument 'mood' (it takes: name, style)"),
            "{unknown_argument}"
        );
        let refused = prompt(&client, "greeting", json!({ "name": "A", "style": "rude" }))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("style must be formal or casual"),
            "{refused}"
        );
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn the_conformance_suite_passes_but_for_the_recorded_baseline() {
    let engine = engine().await;
    let dir = js_clients();
    let output = tokio::process::Command::new("node")
        .arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", &engine.url("/mcp"), "--suite", "all"])
        .arg("--expected-failures")
        .arg(dir.join("mcp-conformance-baseline.yml"))
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("run the MCP conformance suite (node)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit 0: every scenario outside the baseline passed, and every one in
    // it still fails (a stale baseline entry fails the run too).
    assert!(
        output.status.success(),
        "conformance run failed ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    for scenario in [
        "server-initialize",
        "tools-call-with-progress",
        "tools-call-with-logging",
        "prompts-get-with-args",
        "json-schema-2020-12",
        "dns-rebinding-protection",
        "server-sse-multiple-streams",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("✓ {scenario}:"))),
            "{scenario} did not pass:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn host_origin_and_protocol_version_headers_are_checked() {
    let engine = engine().await;
    let http = reqwest::Client::new();
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "raw", "version": "1" } }
    });
    let post = |headers: &[(&str, &str)]| {
        let mut request = http
            .post(engine.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let ok = post(&[]).await.unwrap();
    assert_eq!(ok.status(), 200);

    // DNS rebinding: a foreign Host or a foreign page's Origin.
    let rebinding = post(&[("host", "evil.example.com")]).await.unwrap();
    assert_eq!(rebinding.status(), 403);
    assert!(
        rebinding
            .text()
            .await
            .unwrap()
            .contains("Host header is not allowed")
    );
    let page = post(&[("origin", "http://evil.example.com")])
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    let local_page = post(&[("origin", "http://localhost:6274")]).await.unwrap();
    assert_eq!(local_page.status(), 200);

    let unknown_version = http
        .post(engine.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "1999-01-01")
        .body(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_version.status(), 400);
    assert!(unknown_version.text().await.unwrap().contains("1999-01-01"));
}

#[tokio::test]
async fn allowed_hosts_and_origins_come_from_the_config_and_mcp_can_be_off() {
    let engine = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .config("[mcp]\nallowed_hosts = [\"api.example.com\"]\nallowed_origins = [\"https://app.example.com\"]\n")
        .start()
        .await;
    let http = reqwest::Client::new();
    let list = |host: &'static str, origin: Option<&'static str>| {
        let mut request = http
            .post(engine.url("/mcp"))
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .body(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(list("127.0.0.1", None).await.unwrap().status(), 403);
    assert_ne!(list("api.example.com", None).await.unwrap().status(), 403);
    assert_ne!(
        list("api.example.com", Some("https://app.example.com"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        list("api.example.com", Some("http://localhost:6274"))
            .await
            .unwrap()
            .status(),
        403
    );

    let off = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .config("[mcp]\nenabled = false\n")
        .start()
        .await;
    let response = reqwest::Client::new()
        .post(off.url("/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_admin_api_shows_tools_with_their_plugin_access_and_price() {
    let engine = engine().await;
    let status = engine.admin_plugin("fixture-mcp").await.unwrap();
    assert!(
        status["mcp_tools"]
            .as_array()
            .unwrap()
            .contains(&json!("echo")),
        "{status}"
    );
    assert!(
        status["mcp_prompts"]
            .as_array()
            .unwrap()
            .contains(&json!("greeting")),
        "{status}"
    );

    let tools = engine.admin_get("/_kiln/v1/admin/mcp").await;
    let echo = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap_or_else(|| panic!("{tools}"))
        .clone();
    assert_eq!(echo["plugin"], "fixture-mcp");
    assert_eq!(
        echo["access"],
        json!({ "roles": ["reader"], "price_micros": 0 })
    );
    let quote = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "quote")
        .unwrap_or_else(|| panic!("{tools}"))
        .clone();
    assert_eq!(quote["access"], json!({ "roles": [], "price_micros": 250 }));
}

#[tokio::test]
async fn a_taken_tool_name_or_a_bad_schema_refuses_the_plugin_and_the_rest_keeps_serving() {
    let engine = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .plugin(
            // Loads after fixture-mcp (file-name order), so it is the one refused.
            "zz-clash",
            "fixture-configurable",
            Some("[config]\nname = \"clash\"\ntools = \"mine,echo\"\n"),
        )
        .plugin(
            "badschema",
            "fixture-configurable",
            Some("[config]\nname = \"badschema\"\ntools = \"t\"\ntool_schema = '{\"type\":\"string\"}'\n"),
        )
        .start()
        .await;
    let clash = engine.admin_plugin("zz-clash").await.unwrap();
    assert_eq!(clash["state"], "failed", "{clash}");
    assert!(
        clash["last_error"].as_str().unwrap().contains(
            "MCP tool 'echo' of plugin 'clash' is already provided by plugin 'fixture-mcp'"
        ),
        "{clash}"
    );
    let bad = engine.admin_plugin("badschema").await.unwrap();
    assert_eq!(bad["state"], "failed", "{bad}");
    assert!(
        bad["last_error"].as_str().unwrap().contains(
            "invalid MCP declarations: tool 't': input schema must have \"type\": \"object\""
        ),
        "{bad}"
    );
    let client = rmcp_client(&engine, None).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert!(!tools.iter().any(|t| t.name == "mine" || t.name == "t"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stateless_clients_hear_list_changes_through_subscriptions_listen() {
    let engine = engine().await;
    let client = rmcp_client(&engine, Some(ProtocolVersion::V_2026_07_28)).await;
    let mut subscription = client
        .peer()
        .listen(
            rmcp::model::SubscriptionFilter::builder()
                .tools_list_changed()
                .build(),
        )
        .await
        .expect("subscriptions/listen is acknowledged");
    assert_eq!(subscription.acknowledged().tools_list_changed, Some(true));

    // A settings change reloads the plugin with one more tool.
    engine.install("extra", &fixture("fixture-configurable"));
    std::fs::write(
        engine.plugins_dir().join("extra.toml"),
        "[config]\nname = \"extra\"\ntools = \"extra.tool\"\n",
    )
    .unwrap();
    let notification = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("a list change within 30 s")
        .expect("the subscription is open")
        .expect("a notification");
    assert!(
        matches!(
            notification,
            rmcp::model::ServerNotification::ToolListChangedNotification(_)
        ),
        "{notification:?}"
    );
    let tools = wait_for(Duration::from_secs(10), || {
        let client = &client;
        async move {
            let tools = client.list_all_tools().await.ok()?;
            tools
                .iter()
                .any(|t| t.name == "extra.tool")
                .then_some(tools)
        }
    })
    .await;
    assert!(tools.is_some(), "extra.tool is not listed after the change");
    let called = call(&client, "extra.tool", json!({})).await.unwrap();
    assert_eq!(first_text(&called), "configured:extra.tool");
}

/// How [`stateless_call`] sends its call.
#[derive(Clone, Copy, Default)]
struct Sent<'a> {
    /// The API key, if any.
    key: Option<&'a str>,
    /// A `_meta` member the endpoint's own path does not read, which hands
    /// the call to rmcp.
    to_rmcp: bool,
    /// `Mcp-Name`, when it should not be the tool's name.
    name_header: Option<&'a str>,
}

/// One stateless (2026-07-28) `tools/call` as a client sends it over
/// HTTP: status, content type and body.
async fn stateless_call(
    engine: &Engine,
    name: &str,
    arguments: Value,
    sent: Sent<'_>,
) -> (u16, String, String) {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "e2e", "version": "1" }
    });
    if sent.to_rmcp {
        meta["e2e.example/path"] = json!("rmcp");
    }
    let body = json!({
        "jsonrpc": "2.0", "id": 41, "method": "tools/call",
        "params": { "name": name, "arguments": arguments, "_meta": meta }
    });
    let mut request = reqwest::Client::new()
        .post(engine.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", sent.name_header.unwrap_or(name))
        .body(body.to_string());
    if let Some(key) = sent.key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The messages of an answer: the body, or each event's data.
fn messages(body: &str) -> Vec<Value> {
    if body.starts_with('{') {
        return vec![serde_json::from_str(body).unwrap()];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[tokio::test]
async fn the_endpoint_answers_a_plain_stateless_tool_call_exactly_as_rmcp_does() {
    let engine = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .config("[limits]\ntimeout_ms = 500\n")
        .start()
        .await;
    let key = reader_key(&engine);
    let calls = [
        ("echo", json!({ "text": "x", "times": 2 })),
        ("echo", json!({ "times": 2, "extra": 1 })),
        ("refuse", json!({})),
        ("crash", json!({})),
        ("stats", json!({ "numbers": [1, 2.5] })),
        ("stats", json!({ "numbers": [1], "break_contract": true })),
        ("test_image_content", json!({})),
        ("test_multiple_content_types", json!({})),
        ("test_error_handling", json!({})),
        // Logs while it runs: an event stream, the notifications first.
        ("test_tool_with_logging", json!({})),
    ];
    for (name, arguments) in &calls {
        let keyed = Sent {
            key: Some(&key),
            ..Sent::default()
        };
        let own = stateless_call(&engine, name, arguments.clone(), keyed).await;
        let to_rmcp = Sent {
            to_rmcp: true,
            ..keyed
        };
        let rmcp = stateless_call(&engine, name, arguments.clone(), to_rmcp).await;
        assert_eq!(own.0, rmcp.0, "{name}: status");
        assert_eq!(own.1, rmcp.1, "{name}: content type");
        // Byte for byte: the same messages, framed the same way.
        assert_eq!(own.2, rmcp.2, "{name}");
        if *name == "test_tool_with_logging" {
            let said = messages(&own.2);
            assert_eq!(said.len(), 4, "three logs and the result: {}", own.2);
            assert_eq!(said[0]["method"], "notifications/message");
            assert_eq!(said[0]["params"]["data"], "Tool execution started");
            assert_eq!(said[3]["id"], 41);
        } else {
            assert_eq!(own.1, "application/json", "{name}");
        }
    }
    let answered = engine.log_lines_with(&["answered by the endpoint's stateless path"]);
    assert_eq!(answered.len(), calls.len(), "{}", engine.log_text());

    // An unknown tool, and one the caller may not call, are rmcp's to
    // refuse, whatever path the request looked fit for.
    let keyed = Sent {
        key: Some(&key),
        ..Sent::default()
    };
    let unknown = stateless_call(&engine, "nope", json!({}), keyed).await;
    assert_eq!(
        messages(&unknown.2)[0]["error"]["message"],
        "unknown tool 'nope'",
        "{unknown:?}"
    );
    let (_, _, anonymous) =
        stateless_call(&engine, "echo", json!({ "text": "x" }), Sent::default()).await;
    assert!(anonymous.contains("\"status\":401"), "{anonymous}");
    assert_eq!(
        engine
            .log_lines_with(&["answered by the endpoint's stateless path"])
            .len(),
        calls.len()
    );

    // A header that disagrees with the body is refused by rmcp's check.
    let mismatch = Sent {
        name_header: Some("refuse"),
        ..keyed
    };
    let (status, _, body) = stateless_call(&engine, "echo", json!({ "text": "x" }), mismatch).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("does not match"),
        "Mcp-Name against the body: {body}"
    );
}
