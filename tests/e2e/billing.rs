//! Priced routes paid from the caller's account: holds before the call,
//! 402 when it cannot be afforded, charges committed before the answer,
//! idempotent retries and settlement, on real engines over SQLite and on
//! two engines sharing one PostgreSQL.

use std::time::Duration;

use kiln_e2e::{ADMIN_TOKEN, Engine, TestPostgres, TestRedis, Value, error_of, json, wait_for};

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

    // An Idempotency-Key names a document's charges across retries.
    cli_ok(&e, &["billing", "credit", "key:gql", "1000"]);
    let keyed = |key: &'static str| {
        let url = e.url("/graphql");
        let payer = payer.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .bearer_auth(payer)
                .body(serde_json::json!({ "query": "{ hello }" }).to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = keyed("doc-1").await;
    assert_eq!(
        (status, &first["data"]["hello"]),
        (200, &json!("Hello, world!")),
        "{first}"
    );
    let (_, retried) = keyed("doc-1").await;
    assert_eq!(
        retried["errors"][0]["extensions"]["code"], "ALREADY_CHARGED",
        "{retried}"
    );
    let (status, _) = keyed("not a key").await;
    assert_eq!(status, 400);
    assert_eq!(balance(&e, "key:gql"), (1_250, 300, 0, 950));
}

/// fixture-basic's `POST /basic/metered` (priced at 1,000 micros by the
/// plugin itself): charges each of `charges`, then ends as `then` says.
async fn metered(e: &Engine, key: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(e.url("/basic/metered"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_plugin_charges_what_it_used_and_never_more_than_its_hold() {
    let e = Engine::builder()
        .plugin("fixture-basic", "fixture-basic", None)
        .start()
        .await;
    let payer = key(&e, "meter");
    cli_ok(&e, &["billing", "credit", "key:meter", "10000"]);

    // Two charges add up; while the call runs, its hold is taken out of
    // what the account has available.
    let (status, body) = metered(&e, &payer, json!({ "charges": [300, 200] })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([{ "total": 300 }, { "total": 500 }]));
    assert_eq!(
        body["funds"],
        json!({ "account": "key:meter", "available": 9000, "held": 1000, "charged": 500 })
    );
    assert_eq!(balance(&e, "key:meter"), (10_000, 500, 0, 9_500));
    let newest = &e
        .admin_get("/_kiln/v1/admin/billing/accounts/key:meter/entries?limit=1")
        .await["entries"][0];
    assert_eq!(newest["amount"], 500, "{newest}");
    assert_eq!(newest["reason"], "300 units; 200 units", "{newest}");
    assert_eq!(newest["operation"], "POST /basic/metered", "{newest}");

    // A charge past the hold is refused whole; what was charged stays.
    let (_, body) = metered(&e, &payer, json!({ "charges": [600, 600] })).await;
    assert_eq!(
        body["results"][1],
        json!({ "error": "exceeds-hold", "held": 1000, "charged": 600 })
    );
    // Charging up to the hold and then past it: the call costs the hold.
    let (_, body) = metered(&e, &payer, json!({ "charges": [1000, 1] })).await;
    assert_eq!(body["results"][1]["error"], "exceeds-hold", "{body}");
    // No charge at all: the price. A charge of zero: free.
    metered(&e, &payer, json!({ "charges": [] })).await;
    metered(&e, &payer, json!({ "charges": [0] })).await;
    assert_eq!(balance(&e, "key:meter"), (10_000, 3_100, 0, 6_900));

    // A call that fails keeps what it charged before failing (the default
    // `on_failure = "keep_charges"`), whether it answered an error or
    // trapped; one that charged nothing is voided.
    let (status, _) = metered(&e, &payer, json!({ "charges": [250], "then": "error" })).await;
    assert_eq!(status, 500);
    let (status, _) = metered(&e, &payer, json!({ "charges": [100], "then": "trap" })).await;
    assert_eq!(status, 500);
    let (status, _) = metered(&e, &payer, json!({ "charges": [], "then": "error" })).await;
    assert_eq!(status, 500);
    assert_eq!(balance(&e, "key:meter"), (10_000, 3_450, 0, 6_550));

    // An unpriced route has nothing to charge against.
    let r = reqwest::Client::new()
        .post(e.url("/basic/unpriced-charge"))
        .bearer_auth(&payer)
        .json(&json!({ "charges": [5] }))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["results"],
        json!([{ "error": "not-priced" }]),
        "{body}"
    );
    assert_eq!(balance(&e, "key:meter"), (10_000, 3_450, 0, 6_550));

    // The running sums agree with the entries they came from.
    let account = e
        .admin_get("/_kiln/v1/admin/billing/accounts/key:meter")
        .await;
    assert_eq!(account["consistent"], true, "{account}");
}

#[tokio::test]
async fn on_failure_void_charges_nothing_for_a_failed_call() {
    let e = Engine::builder()
        .plugin("fixture-basic", "fixture-basic", None)
        .config("[billing]\non_failure = \"void\"\n")
        .start()
        .await;
    let payer = key(&e, "strict");
    cli_ok(&e, &["billing", "credit", "key:strict", "5000"]);
    let (status, _) = metered(&e, &payer, json!({ "charges": [250], "then": "error" })).await;
    assert_eq!(status, 500);
    let (status, _) = metered(&e, &payer, json!({ "charges": [400] })).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&e, "key:strict"), (5_000, 400, 0, 4_600));
}

/// POST to the admin API with the admin token: (status, body).
async fn admin_post(e: &Engine, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(e.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_opens_credits_debits_reads_and_settles_accounts_once_per_key() {
    let e = Engine::builder()
        .plugin("words-rust", "words-rust", None)
        .start()
        .await;
    let base = "/_kiln/v1/admin/billing";
    // Nothing without the admin role.
    let r = reqwest::Client::new()
        .get(e.url(&format!("{base}/accounts")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (status, body) = admin_post(
        &e,
        &format!("{base}/accounts"),
        None,
        json!({ "account": "key:team" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["balance"], 0, "{body}");
    let (status, _) = admin_post(
        &e,
        &format!("{base}/accounts"),
        None,
        json!({ "account": "key:team" }),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = admin_post(
        &e,
        &format!("{base}/accounts"),
        None,
        json!({ "account": "no colon" }),
    )
    .await;
    assert_eq!(status, 400);

    // A credit retried under its key is made once.
    let credit = format!("{base}/accounts/key:team/credit");
    let (status, first) = admin_post(
        &e,
        &credit,
        Some("topup-1"),
        json!({ "amount_micros": 50_000, "reason": "top-up" }),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["balance_micros"], 50_000);
    let (status, again) = admin_post(
        &e,
        &credit,
        Some("topup-1"),
        json!({ "amount_micros": 50_000, "reason": "top-up" }),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["entry"], first["entry"], "{again}");
    // The same key for a different amount is a mistake, not a retry.
    let (status, reused) = admin_post(
        &e,
        &credit,
        Some("topup-1"),
        json!({ "amount_micros": 70_000 }),
    )
    .await;
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused")),
        "{reused}"
    );
    let (status, _) = admin_post(&e, &credit, None, json!({ "amount_micros": 0 })).await;
    assert_eq!(status, 400);
    let (status, _) = admin_post(&e, &credit, None, json!({ "amount_micros": -5 })).await;
    assert_eq!(status, 400);
    // A debit never overdraws.
    let debit = format!("{base}/accounts/key:team/debit");
    let (status, body) = admin_post(&e, &debit, None, json!({ "amount_micros": 60_000 })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("overdrawn")),
        "{body}"
    );
    let (status, body) = admin_post(
        &e,
        &debit,
        Some("fee-1"),
        json!({ "amount_micros": 5_000, "reason": "fee" }),
    )
    .await;
    assert_eq!(
        (status, &body["balance_micros"]),
        (200, &json!(45_000)),
        "{body}"
    );
    let (status, _) = admin_post(
        &e,
        &format!("{base}/accounts/key:nobody/debit"),
        None,
        json!({ "amount_micros": 1 }),
    )
    .await;
    assert_eq!(status, 404);

    // The plugin's own route prices: a flat 1,000 for a count, 100 a word
    // for a shout (at most its 10,000 hold).
    let team = key(&e, "team");
    let post = |path: &'static str, text: String| {
        let url = e.url(path);
        let team = team.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(team)
                .json(&json!({ "text": text }))
                .send()
                .await
                .unwrap()
        }
    };
    let count: Value = post("/words/count", "one two three".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(count["words"], 3);
    let shout: Value = post("/words/shout", "one two three".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shout["shout"], "ONE TWO THREE", "{shout}");
    let many = vec!["w"; 150].join(" ");
    let shout: Value = post("/words/shout", many).await.json().await.unwrap();
    assert_eq!(
        (shout["words"].as_u64(), shout["truncated"].as_bool()),
        (Some(100), Some(true)),
        "{shout}"
    );
    // Empty: refused before any work, and free.
    assert_eq!(post("/words/shout", " ".into()).await.status(), 400);
    assert_eq!(balance(&e, "key:team"), (45_000, 11_300, 0, 33_700));

    let entries = e
        .admin_get(&format!("{base}/accounts/key:team/entries?limit=10"))
        .await;
    let amounts: Vec<i64> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [10_000, 300, 1_000, 5_000, 50_000], "{entries}");
    let accounts = e.admin_get(&format!("{base}/accounts")).await;
    assert_eq!(accounts["accounts"][0]["account"], "key:team", "{accounts}");

    let (status, report) = admin_post(&e, &format!("{base}/settle"), None, json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["entries"].as_i64(), report["amount"].as_i64()),
        (Some(3), Some(11_300)),
        "{report}"
    );
    assert_eq!(balance(&e, "key:team"), (33_700, 0, 0, 33_700));
    let settlements = e.admin_get(&format!("{base}/settlements")).await;
    assert_eq!(
        settlements["settlements"][0]["id"], report["settlement"],
        "{settlements}"
    );

    // Every movement is in the audit log, with who made it.
    let audit = e.admin_get("/_kiln/v1/admin/audit?limit=50").await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["action"].as_str())
        .collect();
    for action in [
        "billing.account_opened",
        "billing.credit",
        "billing.debit",
        "billing.settled",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    assert_eq!(
        actions.iter().filter(|a| **a == "billing.credit").count(),
        1,
        "{actions:?}"
    );
}

/// kill -9 in the middle of a settlement (the test hook pauses between
/// batches), restart, settle again: every entry is deducted exactly once
/// and the balances come out to the micro.
#[tokio::test]
async fn a_settlement_killed_between_batches_finishes_on_the_next_run_exactly_once() {
    let mut e = Engine::builder()
        .plugin("hello-rust", "hello-rust", None)
        .config(&format!("{}[billing]\nsettle_batch = 2\n", priced(1_000)))
        .env("KILN_TEST_SETTLE_PAUSE_MS", "60000")
        .start()
        .await;
    let payer = key(&e, "settle");
    cli_ok(&e, &["billing", "credit", "key:settle", "100000"]);
    for _ in 0..7 {
        assert_eq!(hello(&e, Some(&payer), None).await.status(), 200);
    }
    assert_eq!(balance(&e, "key:settle"), (100_000, 7_000, 0, 93_000));

    // The engine settles one batch of two, then pauses for a minute.
    let url = e.url("/_kiln/v1/admin/billing/settle");
    let settling = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
    });
    let first = wait_for(Duration::from_secs(30), || async {
        let (b, p, h, a) = balance(&e, "key:settle");
        (p < 7_000).then_some((b, p, h, a))
    })
    .await;
    assert_eq!(first, Some((98_000, 5_000, 0, 93_000)));
    e.restart();
    assert!(
        settling.await.unwrap().is_err(),
        "the engine was killed mid-settlement"
    );

    // The rerun takes the rest, and only the rest.
    let rerun = cli_ok(&e, &["billing", "settle"]);
    assert!(rerun.contains("5 entries"), "{rerun}");
    assert_eq!(balance(&e, "key:settle"), (93_000, 0, 0, 93_000));
    let again = cli_ok(&e, &["billing", "settle"]);
    assert!(again.contains("0 entries"), "{again}");
    let entries = e
        .admin_get("/_kiln/v1/admin/billing/accounts/key:settle/entries?limit=20")
        .await;
    let charges: Vec<&Value> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "charge")
        .collect();
    assert_eq!(charges.len(), 7, "{entries}");
    let mut by_settlement = std::collections::BTreeMap::<String, usize>::new();
    for c in &charges {
        let id = c["settlement"].as_str().expect("every charge settled");
        *by_settlement.entry(id.to_string()).or_default() += 1;
    }
    let mut counts: Vec<usize> = by_settlement.values().copied().collect();
    counts.sort();
    assert_eq!(
        counts,
        [2, 5],
        "the killed run's batch and the rerun's: {by_settlement:?}"
    );
    let account = e
        .admin_get("/_kiln/v1/admin/billing/accounts/key:settle")
        .await;
    assert_eq!(account["consistent"], true, "{account}");
}

/// kill -9 while a priced call runs: its hold outlives the process, then
/// expires, and the money is the caller's again; the charges the plugin
/// made in the lost call count for nothing.
#[tokio::test]
async fn a_hold_left_by_a_killed_engine_expires_and_releases_the_money() {
    let mut e = Engine::builder()
        .plugin("fixture-basic", "fixture-basic", None)
        .config("[billing]\nhold_ttl_ms = 2000\n")
        .start()
        .await;
    let payer = key(&e, "crash");
    cli_ok(&e, &["billing", "credit", "key:crash", "5000"]);
    let url = e.url("/basic/metered");
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(payer)
            .json(&json!({ "charges": [300], "then": "sleep", "sleep_ms": 30000 }))
            .send()
            .await
    });
    let held = wait_for(Duration::from_secs(20), || async {
        let (_, _, h, a) = balance(&e, "key:crash");
        (h > 0).then_some((h, a))
    })
    .await;
    assert_eq!(
        held,
        Some((1_000, 4_000)),
        "the call's hold is in the ledger"
    );
    e.restart();
    assert!(
        call.await.unwrap().is_err(),
        "the engine was killed mid-call"
    );
    let released = wait_for(Duration::from_secs(20), || async {
        let sums = balance(&e, "key:crash");
        (sums.2 == 0).then_some(sums)
    })
    .await;
    assert_eq!(released, Some((5_000, 0, 0, 5_000)));
}

/// A call that outlives its hold finds it released when it ends: the
/// caller hears 503 `billing_unavailable` and nothing is charged, never a
/// free answer.
#[tokio::test]
async fn a_call_that_outlives_its_hold_is_refused_and_charges_nothing() {
    let e = Engine::builder()
        .plugin("fixture-basic", "fixture-basic", None)
        .config("[billing]\nhold_ttl_ms = 500\n")
        .start()
        .await;
    let payer = key(&e, "slow");
    cli_ok(&e, &["billing", "credit", "key:slow", "5000"]);
    let (status, body) = metered(
        &e,
        &payer,
        json!({ "charges": [300], "then": "sleep", "sleep_ms": 2500 }),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "billing_unavailable", "{body}");
    assert_eq!(balance(&e, "key:slow"), (5_000, 0, 0, 5_000));
    // A call inside its hold's time is charged as usual.
    let (status, body) = metered(&e, &payer, json!({ "charges": [300] })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(balance(&e, "key:slow"), (5_000, 300, 0, 4_700));
}

/// `GET /_kiln/v1/billing/me` with `key`.
async fn me(e: &Engine, key: &str) -> Value {
    reqwest::Client::new()
        .get(e.url("/_kiln/v1/billing/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two engines on one PostgreSQL: what a caller reads is cached (and,
/// without Redis, may lag the other engine), but a hold always asks the
/// database; with Redis the other engine hears the movement at once.
#[tokio::test]
async fn balances_are_cached_for_readers_but_never_for_holds() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let database = format!("[database]\nurl = {:?}\nmax_connections = 4\n", pg.url);
    let engine = |redis: Option<String>| {
        let mut config = format!("{}{database}", priced(1_000));
        if let Some(url) = redis {
            config.push_str(&format!("[redis]\nurl = {url:?}\n"));
        }
        Engine::builder()
            .plugin("hello-rust", "hello-rust", None)
            .config(&config)
            .start()
    };

    // Without Redis.
    let (a, b) = tokio::join!(engine(None), engine(None));
    let payer = key(&a, "cached");
    cli_ok(&a, &["billing", "credit", "key:cached", "1000"]);
    assert_eq!(me(&b, &payer).await["available_micros"], 1000);
    assert_eq!(hello(&a, Some(&payer), None).await.status(), 200);
    // A, which moved the money, reads it at once; B's reader still has
    // its cached figure ...
    assert_eq!(me(&a, &payer).await["available_micros"], 0);
    assert_eq!(me(&b, &payer).await["available_micros"], 1000);
    // ... but B's hold asks the database and is refused.
    let (status, code, _) = error_of(hello(&b, Some(&payer), None).await).await;
    assert_eq!((status, code.as_str()), (402, "payment_required"));
    drop((a, b));

    // With Redis, B hears what A moved.
    let url = redis.url();
    let (a, b) = tokio::join!(engine(Some(url.clone())), engine(Some(url)));
    cli_ok(&a, &["billing", "credit", "key:cached", "1000"]);
    assert_eq!(me(&b, &payer).await["available_micros"], 1000);
    assert_eq!(hello(&a, Some(&payer), None).await.status(), 200);
    let heard = wait_for(Duration::from_secs(5), || async {
        let available = me(&b, &payer).await["available_micros"].as_i64();
        (available == Some(0)).then_some(())
    })
    .await;
    assert!(heard.is_some(), "engine B still shows the old balance");
}

/// One ledger, two databases: every kind of movement and every answer,
/// in batches as the group commit sends them, must come out the same on
/// SQLite (statements run by the engine) and on PostgreSQL (one
/// `kiln_ledger_apply` call a batch), down to the entry ids and the sums.
#[tokio::test]
async fn the_ledger_answers_alike_on_sqlite_and_postgres() {
    use kiln::store::ledger::{Applied, LedgerStore, Op};
    use kiln::store::{Database, DatabaseConfig};

    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let on_pg = DatabaseConfig {
        url: Some(kiln::config::Secret::new(pg.url.clone())),
        ..Default::default()
    };
    let mut ledgers = Vec::new();
    for config in [DatabaseConfig::default(), on_pg] {
        let db = Database::connect(&config, dir.path()).await.unwrap();
        db.migrate().await.unwrap();
        ledgers.push(LedgerStore::new(db));
    }

    let hold = |key: &str, amount: i64, expires_at: i64| Op::Hold {
        account: "key:a".into(),
        request_key: format!("key:a {key}"),
        amount,
        plugin: "p".into(),
        operation: "GET /x".into(),
        now_ms: 1,
        expires_at,
    };
    let post = |key: &str, amount: i64| Op::Post {
        request_key: format!("key:a {key}"),
        amount,
        reason: Some("3 words".into()),
        request_id: format!("r-{key}"),
        now_ms: 2,
    };
    let void = |key: &str| Op::Void {
        request_key: format!("key:a {key}"),
    };
    let adjust = |account: &str, credit: bool, amount: i64, key: Option<&str>| Op::Adjust {
        account: account.into(),
        credit,
        amount,
        reason: None,
        key: key.map(str::to_string),
        now_ms: 3,
    };
    let batches = vec![
        vec![
            hold("k0", 10, 9),                      // no account yet
            adjust("key:a", true, 100, Some("t1")), // creates it
            hold("k1", 60, 9),
            hold("k1", 10, 9), // the same key in flight
            hold("k2", 50, 9), // 40 left
            hold("k3", 30, 9),
        ],
        vec![
            post("k1", 500),   // clamped to the hold
            hold("k1", 10, 9), // charged already
            void("k3"),
            post("k9", 5),                          // never held
            adjust("key:a", true, 100, Some("t1")), // the same key again
            adjust("key:a", false, 1_000, None),    // more than available
            adjust("key:b", false, 1, None),        // no such account
            Op::Open {
                account: "key:b".into(),
                now_ms: 4,
            },
            Op::Open {
                account: "key:b".into(),
                now_ms: 4,
            },
            adjust("key:a", false, 15, Some("fee")),
        ],
        vec![
            hold("k4", 20, 5),
            hold("k5", 5, 50),
            post("k5", 0), // charged nothing: voided
            hold("k6", 5, 5),
        ],
        vec![Op::Expire { now_ms: 6 }, post("k4", 20)],
    ];
    let mut answers = Vec::new();
    for ledger in &ledgers {
        let mut of_this = Vec::new();
        for batch in &batches {
            of_this.push(ledger.apply(batch).await.unwrap());
        }
        let a = ledger.account("key:a").await.unwrap().unwrap();
        let derived = ledger.derived("key:a").await.unwrap();
        let entries: Vec<_> = ledger
            .entries("key:a", 100, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.kind, e.amount, e.reason, e.request_id))
            .collect();
        answers.push((of_this, (a.balance, a.pending, a.held), derived, entries));
    }
    let (sqlite, postgres) = (&answers[0], &answers[1]);
    assert_eq!(sqlite, postgres, "SQLite answered left, PostgreSQL right");
    // And what they agree on is right.
    assert_eq!(
        sqlite.0[0],
        [
            Applied::NoAccount,
            Applied::Adjusted {
                entry: 1,
                balance: 100
            },
            Applied::Held,
            Applied::InFlight,
            Applied::Insufficient { available: 40 },
            Applied::Held,
        ]
    );
    assert_eq!(
        sqlite.0[1],
        [
            Applied::Posted {
                entry: 2,
                amount: 60
            },
            Applied::AlreadyCharged,
            Applied::Voided,
            Applied::NotHeld,
            Applied::AlreadyApplied {
                entry: 1,
                amount: 100
            },
            Applied::Overdrawn { available: 40 },
            Applied::NoAccount,
            Applied::Opened,
            Applied::Exists,
            Applied::Adjusted {
                entry: 3,
                balance: 85
            },
        ]
    );
    assert_eq!(
        sqlite.0[2],
        [Applied::Held, Applied::Held, Applied::Voided, Applied::Held]
    );
    assert_eq!(sqlite.0[3], [Applied::Expired(2), Applied::NotHeld]);
    assert_eq!(sqlite.1, (85, 60, 0));
    assert_eq!(sqlite.2, (85, 60, 0));
}
