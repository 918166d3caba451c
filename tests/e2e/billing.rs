//! Priced routes paid from the caller's account: holds before the call,
//! 402 when it cannot be afforded, charges committed before the answer,
//! idempotent retries and settlement, on real engines over SQLite and on
//! two engines sharing one PostgreSQL.

use kiln_e2e::{Engine, TestPostgres, Value, error_of};

/// hello-rust's `GET /hello/{name}` at `micros` a call.
fn priced(micros: u64) -> String {
    format!(
        "[[billing.prices]]\nplugin = \"hello-rust\"\nroute = \"GET /hello/{{name}}\"\nmicros = {micros}\n"
    )
}

fn cli_ok(e: &Engine, args: &[&str]) -> String {
    let out = e.cli(args);
    assert!(
        out.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn key(e: &Engine, name: &str) -> String {
    cli_ok(e, &["keys", "create", "--name", name])
        .trim()
        .to_string()
}

/// `kiln billing balance` → (balance, pending, held, available) in micros.
fn balance(e: &Engine, account: &str) -> (i64, i64, i64, i64) {
    let text = cli_ok(e, &["billing", "balance", account]);
    let micros = |what: &str| -> i64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} in {text}"));
        let inner = line.rsplit_once('(').unwrap().1;
        inner.split_whitespace().next().unwrap().parse().unwrap()
    };
    (
        micros("balance"),
        micros("pending"),
        micros("held"),
        micros("available"),
    )
}

async fn hello(e: &Engine, key: Option<&str>, idempotency: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(e.url("/hello/bench"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(k) = idempotency {
        request = request.header("idempotency-key", k);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_priced_route_charges_what_the_account_affords_and_settles_once() {
    let e = Engine::builder()
        .plugin("hello-rust", "hello-rust", None)
        .config(&priced(250_000))
        .start()
        .await;
    let payer = key(&e, "payer");

    // No account yet: 402 naming the account and the price.
    let (status, code, message) = error_of(hello(&e, Some(&payer), None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (402, "payment_required"),
        "{message}"
    );
    assert!(
        message.contains("key:payer") && message.contains("250000"),
        "{message}"
    );
    // Anonymous callers have nobody to charge.
    let (status, code, _) = error_of(hello(&e, None, None).await).await;
    assert_eq!((status, code.as_str()), (402, "payment_required"));

    cli_ok(&e, &["billing", "credit", "key:payer", "1000000"]);
    for _ in 0..4 {
        let r = hello(&e, Some(&payer), None).await;
        assert_eq!(r.status(), 200);
    }
    let refused = hello(&e, Some(&payer), None).await;
    assert_eq!(refused.status(), 402);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["details"]["price_micros"], 250_000, "{body}");
    assert_eq!(body["error"]["details"]["available_micros"], 0, "{body}");
    assert_eq!(body["error"]["details"]["account"], "key:payer", "{body}");
    assert_eq!(balance(&e, "key:payer"), (1_000_000, 1_000_000, 0, 0));

    // The caller reads its own account; without a credential there is none.
    let me: Value = reqwest::Client::new()
        .get(e.url("/_kiln/v1/billing/me"))
        .bearer_auth(&payer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["account"], "key:payer", "{me}");
    assert_eq!(me["pending_micros"], 1_000_000, "{me}");
    assert_eq!(me["available_micros"], 0, "{me}");
    let kinds: Vec<&str> = me["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["charge", "charge", "charge", "charge", "credit"],
        "{me}"
    );
    assert_eq!(me["recent"][0]["operation"], "GET /hello/{name}", "{me}");
    let (status, _, _) = error_of(e.get("/_kiln/v1/billing/me").await).await;
    assert_eq!(status, 401);

    // Settlement deducts the pending charges, and a second run finds none.
    let first = cli_ok(&e, &["billing", "settle"]);
    assert!(first.contains("4 entries"), "{first}");
    assert_eq!(balance(&e, "key:payer"), (0, 0, 0, 0));
    let again = cli_ok(&e, &["billing", "settle"]);
    assert!(again.contains("0 entries"), "{again}");
    assert_eq!(balance(&e, "key:payer"), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_retried_idempotency_key_charges_once() {
    let e = Engine::builder()
        .plugin("hello-rust", "hello-rust", None)
        .config(&priced(1_000))
        .start()
        .await;
    let payer = key(&e, "retry");
    cli_ok(&e, &["billing", "credit", "key:retry", "10000"]);
    assert_eq!(hello(&e, Some(&payer), Some("order-7")).await.status(), 200);
    let (status, code, _) = error_of(hello(&e, Some(&payer), Some("order-7")).await).await;
    assert_eq!((status, code.as_str()), (409, "already_charged"));
    // The key is the payer's own: another account may use the same one.
    let other = key(&e, "other");
    cli_ok(&e, &["billing", "credit", "key:other", "10000"]);
    assert_eq!(hello(&e, Some(&other), Some("order-7")).await.status(), 200);
    assert_eq!(balance(&e, "key:retry"), (10_000, 1_000, 0, 9_000));
    let (status, _, _) = error_of(hello(&e, Some(&payer), Some("bad key")).await).await;
    assert_eq!(status, 400);
}

/// 200 concurrent priced requests from two engines on one PostgreSQL
/// against an account that affords exactly 37 of them.
#[tokio::test]
async fn two_engines_never_overspend_one_account() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let config = format!(
        "{}[database]\nurl = {:?}\nmax_connections = 8\n",
        priced(10_000),
        pg.url
    );
    let a = Engine::builder()
        .plugin("hello-rust", "hello-rust", None)
        .config(&config)
        .start()
        .await;
    let b = Engine::builder()
        .plugin("hello-rust", "hello-rust", None)
        .config(&config)
        .start()
        .await;
    let payer = key(&a, "shared");
    cli_ok(&a, &["billing", "credit", "key:shared", "370000"]);
    let mut calls = Vec::new();
    for i in 0..200 {
        let url = if i % 2 == 0 {
            a.url("/hello/x")
        } else {
            b.url("/hello/x")
        };
        let payer = payer.clone();
        calls.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(payer)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, refused), (37, 163));
    assert_eq!(balance(&a, "key:shared"), (370_000, 370_000, 0, 0));
    let settled = cli_ok(&b, &["billing", "settle"]);
    assert!(settled.contains("37 entries"), "{settled}");
    assert_eq!(balance(&b, "key:shared"), (0, 0, 0, 0));
}

/// One stateless (2026-07-28) `tools/call` of fixture-mcp's `quote`, which
/// declares a price of 250 micros; the JSON-RPC result.
async fn quote(e: &Engine, key: &str) -> Value {
    let meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "e2e", "version": "1" }
    });
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "quote", "arguments": { "text": "hi" }, "_meta": meta }
    });
    let response = reqwest::Client::new()
        .post(e.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "quote")
        .bearer_auth(key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    // One JSON body, or an event stream whose data line is the message.
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&text);
    let message: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    message["result"].clone()
}

#[tokio::test]
async fn a_tool_charges_its_declared_price_and_refuses_with_an_error_result() {
    let e = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .start()
        .await;
    let payer = key(&e, "agent");
    let refused = quote(&e, &payer).await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(
        refused["structuredContent"]["code"], "payment_required",
        "{refused}"
    );
    assert_eq!(
        refused["structuredContent"]["price_micros"], 250,
        "{refused}"
    );
    assert_eq!(
        refused["structuredContent"]["account"], "key:agent",
        "{refused}"
    );

    cli_ok(&e, &["billing", "credit", "key:agent", "600"]);
    for _ in 0..2 {
        let ok = quote(&e, &payer).await;
        assert_eq!(ok["isError"], false, "{ok}");
    }
    let short = quote(&e, &payer).await;
    assert_eq!(
        short["structuredContent"]["available_micros"], 100,
        "{short}"
    );
    assert_eq!(balance(&e, "key:agent"), (600, 500, 0, 100));
}

async fn graphql(e: &Engine, key: Option<&str>, query: &str) -> Value {
    let mut request = reqwest::Client::new()
        .post(e.url("/graphql"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "query": query }).to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn each_priced_field_of_a_document_is_held_and_charged_on_its_own() {
    let e = Engine::builder()
        .plugin("hello-rust", "hello-rust", None)
        .config(
            "[[billing.prices]]\nplugin = \"hello-rust\"\nfield = \"Query.hello\"\nmicros = 100\n",
        )
        .start()
        .await;
    let anonymous = graphql(&e, None, "{ hello }").await;
    assert_eq!(
        anonymous["errors"][0]["extensions"]["code"], "PAYMENT_REQUIRED",
        "{anonymous}"
    );
    let payer = key(&e, "gql");
    cli_ok(&e, &["billing", "credit", "key:gql", "250"]);
    // Two aliases of the priced field: two charges.
    let both = graphql(
        &e,
        Some(&payer),
        r#"{ a: hello(name: "x") b: hello(name: "y") }"#,
    )
    .await;
    assert_eq!(both["data"]["a"], "Hello, x!", "{both}");
    assert_eq!(both["data"]["b"], "Hello, y!", "{both}");
    let short = graphql(&e, Some(&payer), "{ hello }").await;
    let error = &short["errors"][0];
    assert_eq!(error["extensions"]["code"], "PAYMENT_REQUIRED", "{short}");
    assert_eq!(error["extensions"]["price_micros"], 100, "{short}");
    assert_eq!(error["extensions"]["available_micros"], 50, "{short}");
    assert_eq!(error["extensions"]["account"], "key:gql", "{short}");
    assert_eq!(balance(&e, "key:gql"), (250, 200, 0, 50));
}
