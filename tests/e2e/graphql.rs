use std::time::Duration;

use kiln_e2e::{ADMIN_TOKEN, Engine, EngineBuilder, NodeClient, Value, json, wait_for};

/// catalog-rust, with `setPrice` free: its declared `@price(micros: 100)`
/// overridden by the operator (billing has its own tests).
async fn catalog() -> Engine {
    Engine::builder()
        .plugin("catalog", "catalog-rust", None)
        .config(
            "[[billing.prices]]\nplugin = \"catalog-rust\"\nfield = \"Mutation.setPrice\"\nmicros = 0\n",
        )
        .start()
        .await
}

const ADD: &str =
    "mutation($p: ProductInput!) { addProduct(input: $p) { sku name tags price { amount } } }";
const SET_PRICE: &str = "mutation($sku: String!, $a: Float!) { setPrice(sku: $sku, amount: $a) { sku amount currency changedAt } }";

async fn add(e: &Engine, sku: &str, tags: &[&str]) {
    e.graphql_ok(
        ADD,
        json!({ "p": { "sku": sku, "name": format!("The {sku}"), "tags": tags } }),
    )
    .await;
}

#[tokio::test]
async fn queries_and_mutations_run_against_the_plugin_that_declares_them() {
    let e = catalog().await;
    let text = e
        .client
        .post(e.url("/graphql"))
        .json(&json!({ "query": ADD, "variables": { "p": { "sku": "tea", "name": "Green tea", "tags": ["drink"] } } }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Fields come back in selection order (read from the raw text: the
    // test's JSON parser would sort them).
    assert_eq!(
        text,
        r#"{"data":{"addProduct":{"sku":"tea","name":"Green tea","tags":["drink"],"price":null}}}"#
    );
    add(&e, "salt", &[]).await;
    let price = e
        .graphql_ok(SET_PRICE, json!({ "sku": "tea", "a": 3.5 }))
        .await;
    assert_eq!(
        price["setPrice"]["currency"], "EUR",
        "the enum default applies"
    );
    assert!(
        price["setPrice"]["changedAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let data = e
        .graphql_ok(
            r#"{ one: product(sku: "tea") { name price { amount currency } }
                 none: product(sku: "nope") { name }
                 drinks: products(tag: "drink") { sku }
                 all: products { sku } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["one"],
        json!({ "name": "Green tea", "price": { "amount": 3.5, "currency": "EUR" } })
    );
    assert_eq!(data["none"], Value::Null);
    assert_eq!(data["drinks"], json!([{ "sku": "tea" }]));
    assert_eq!(data["all"], json!([{ "sku": "salt" }, { "sku": "tea" }]));
}

#[tokio::test]
async fn plugin_errors_are_graphql_errors_with_path_message_and_code() {
    let e = catalog().await;
    let (status, body) = e
        .graphql(
            r#"mutation { setPrice(sku: "ghost", amount: 1) { sku } }"#,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["message"], "no product with sku 'ghost'");
    assert_eq!(error["path"], json!(["setPrice"]));
    assert_eq!(error["extensions"]["code"], "NOT_FOUND");

    // `setPrice: Price!` failing beside a field that worked: a non-null
    // field has no null to give, so its nearest nullable parent — here the
    // root — is null (spec 6.4.4). The mutation before it still ran.
    add(&e, "tea", &[]).await;
    let (_, body) = e
        .graphql(
            r#"mutation { ok: addProduct(input: {sku: "a", name: "A"}) { sku }
                          bad: setPrice(sku: "tea", amount: -1) { sku } }"#,
            json!({}),
        )
        .await;
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["bad"]), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    let data = e
        .graphql_ok(r#"{ product(sku: "a") { sku } }"#, json!({}))
        .await;
    assert_eq!(data["product"], json!({ "sku": "a" }));
}

#[tokio::test]
async fn requests_that_cannot_run_get_4xx_with_a_reason() {
    let e = catalog().await;
    // Validation error, application/graphql-response+json: 400 and no data.
    let (status, body) = e.graphql("{ nope }", json!({})).await;
    assert_eq!(status, 400);
    assert!(body.get("data").is_none(), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown field \"nope\"")
    );
    // The same with application/json: 200, as the spec asks.
    let r = e
        .client
        .post(e.url("/graphql"))
        .header("accept", "application/json")
        .json(&json!({ "query": "{ nope }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Mutations are refused over GET.
    let r = e
        .get("/graphql?query=mutation%7BdeleteProduct(sku%3A%22a%22)%7D")
        .await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // Bodies that are not JSON, or not GraphQL requests.
    for (content_type, body, status, reason) in [
        ("application/json", "{", 400, "not valid JSON"),
        (
            "application/json",
            r#"{"query": 5}"#,
            400,
            "\"query\" must be a string",
        ),
        ("application/json", r#"[{"query": "{a}"}]"#, 400, "batched"),
        (
            "text/plain",
            r#"{"query": "{a}"}"#,
            415,
            "Content-Type text/plain",
        ),
    ] {
        let r = e
            .client
            .post(e.url("/graphql"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["errors"][0]["message"].as_str().unwrap().contains(reason),
            "{v}"
        );
    }
    // Nothing acceptable: 406.
    let r = e
        .client
        .get(e.url("/graphql?query=%7B__typename%7D"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn browsers_get_graphiql() {
    let e = catalog().await;
    let r = e
        .client
        .get(e.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("GraphiQL") && page.contains("/graphql/ws"),
        "{page}"
    );
}

#[tokio::test]
async fn the_graphql_http_audits_pass_with_no_must_failures() {
    let e = catalog().await;
    let url = e.url("/graphql");
    let (code, lines) = NodeClient::start("audit.mjs", &[&url])
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(code, Some(0), "{lines:?}");
    let report: Value = serde_json::from_str(lines.last().expect("a report")).unwrap();
    eprintln!(
        "graphql-http audits: {} ok, {} warn, {} error; not ok: {}",
        report["ok"], report["warn"], report["error"], report["notOk"]
    );
    assert_eq!(report["error"], 0, "MUST failures: {}", report["notOk"]);
    assert!(report["ok"].as_u64().unwrap() > 40, "{report}");
}

#[tokio::test]
async fn the_admin_api_shows_each_field_with_its_plugin_and_directives() {
    let e = catalog().await;
    let r = e.get("/_kiln/v1/admin/graphql").await;
    assert_eq!(r.status(), 401);
    let v: Value = e
        .client
        .get(e.url("/_kiln/v1/admin/graphql"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let field = |t: &str, f: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == t && x["field"] == f)
            .cloned()
            .unwrap_or_else(|| panic!("no {t}.{f} in {v}"))
    };
    assert_eq!(field("Mutation", "setPrice")["price_micros"], 100);
    assert_eq!(field("Mutation", "setPrice")["plugin"], "catalog-rust");
    assert_eq!(
        field("Mutation", "deleteProduct")["auth"],
        json!(["editor"])
    );
    assert_eq!(field("Subscription", "priceChanged")["topic"], "prices");
    assert_eq!(field("Product", "name")["resolved_by"], "parent");
    assert_eq!(field("Query", "product")["resolved_by"], "call");
    assert!(
        v["sdl"]
            .as_str()
            .unwrap()
            .contains("priceChanged(sku: String): Price")
    );
}

fn sdl_settings(name: &str, sdl: &str, answer: &str) -> String {
    format!("[config]\nname = {name:?}\nsdl = {sdl:?}\nanswer = {answer:?}\n")
}

/// Installs `fixture-configurable` as `<stem>.wasm`, named `name`, with
/// `sdl` as its fragment and `answer` as every field's value.
trait SdlPlugin {
    fn sdl_plugin(self, stem: &str, name: &str, sdl: &str, answer: &str) -> Self;
}

impl SdlPlugin for EngineBuilder {
    fn sdl_plugin(self, stem: &str, name: &str, sdl: &str, answer: &str) -> Self {
        self.plugin(
            stem,
            "fixture-configurable",
            Some(&sdl_settings(name, sdl, answer)),
        )
    }
}

#[tokio::test]
async fn a_conflicting_fragment_is_refused_naming_both_plugins_and_the_schema_keeps_serving() {
    let e = Engine::builder()
        .sdl_plugin("a", "alpha", "extend type Query { x: Int }", "1")
        .sdl_plugin("b", "beta", "extend type Query { x: Int }", "2")
        .sdl_plugin(
            "c",
            "gamma",
            "type P { id: ID } extend type Query { p: P }",
            "{}",
        )
        .sdl_plugin(
            "d",
            "delta",
            "type P { id: String } extend type Query { q: Int }",
            "3",
        )
        .start()
        .await;
    let b = e.admin_plugin("b").await.unwrap();
    assert_eq!(b["state"], "failed");
    let reason = b["last_error"].as_str().unwrap();
    assert!(
        reason.contains("field Query.x is declared by both plugin 'alpha' and plugin 'beta'"),
        "{reason}"
    );
    let d = e.admin_plugin("d").await.unwrap();
    let reason = d["last_error"].as_str().unwrap();
    assert!(
        reason.contains("type P is defined differently by plugin 'gamma' and plugin 'delta'"),
        "{reason}"
    );
    assert_eq!(e.graphql_ok("{ x }", json!({})).await["x"], 1);

    // A bad new version of a serving plugin leaves the old one serving.
    std::fs::write(
        e.plugins_dir().join("a.toml"),
        sdl_settings("alpha", "extend type Query { x: Int @cached }", "5"),
    )
    .unwrap();
    let status = wait_for(Duration::from_secs(20), || async {
        let a = e.admin_plugin("a").await?;
        (a["state"] == "serving_previous").then_some(a)
    })
    .await
    .expect("the bad version is refused");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("unknown directive @cached"),
        "{status}"
    );
    assert_eq!(e.graphql_ok("{ x }", json!({})).await["x"], 1);
}

#[tokio::test]
async fn replacing_a_plugin_changes_the_schema_live_and_open_subscriptions_continue() {
    let sub = "type T { n: Int! } extend type Subscription { t: T @topic(name: \"t\") }";
    let e = Engine::builder()
        .sdl_plugin(
            "live",
            "live",
            &format!("extend type Query {{ a: Int }} {sub}"),
            "1",
        )
        .plugin("pub", "fixture-pubsub", None)
        .start()
        .await;
    assert_eq!(e.graphql_ok("{ a }", json!({})).await["a"], 1);
    let subscriber = NodeClient::start(
        "subscribe.mjs",
        &[
            "ws",
            &e.ws_url("/graphql/ws"),
            "subscription { t { n } }",
            // More than will come: the warm-up below may deliver several.
            "1000",
            "60000",
        ],
    );
    let publish = |n: u32| {
        let e = &e;
        async move {
            e.client
                .post(e.url("/publish-raw/t"))
                .body(format!("{{\"n\": {n}}}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Publish until the subscription is registered and sees one.
    let first = wait_for(Duration::from_secs(20), || async {
        assert_eq!(publish(1).await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        subscriber
            .lines()
            .iter()
            .any(|l| l.contains("\"n\":1"))
            .then_some(())
    })
    .await;
    assert!(first.is_some(), "{:?}", subscriber.lines());

    std::fs::write(
        e.plugins_dir().join("live.toml"),
        sdl_settings(
            "live",
            &format!("extend type Query {{ b: String }} {sub}"),
            "\"bee\"",
        ),
    )
    .unwrap();
    let swapped = wait_for(Duration::from_secs(20), || async {
        let (_, body) = e.graphql("{ b }", json!({})).await;
        (body["data"]["b"] == "bee").then_some(())
    })
    .await;
    assert!(swapped.is_some(), "the new schema serves");
    let (status, body) = e.graphql("{ a }", json!({})).await;
    assert_eq!(status, 400, "the old field is gone: {body}");

    // The subscription opened before the swap still receives.
    assert_eq!(publish(2).await, 200);
    let after = wait_for(Duration::from_secs(20), || async {
        subscriber
            .lines()
            .iter()
            .any(|l| l.contains("\"n\":2"))
            .then_some(())
    })
    .await;
    assert!(after.is_some(), "{:?}", subscriber.lines());
}

#[tokio::test]
async fn subscriptions_over_websocket_and_sse_receive_what_a_mutation_publishes() {
    let e = catalog().await;
    add(&e, "tea", &[]).await;
    add(&e, "coffee", &[]).await;
    let query = r#"subscription { priceChanged(sku: "tea") { sku amount currency } }"#;
    let ws = NodeClient::start(
        "subscribe.mjs",
        &["ws", &e.ws_url("/graphql/ws"), query, "2", "30000"],
    );
    let sse = NodeClient::start(
        "subscribe.mjs",
        &["sse", &e.url("/graphql/stream"), query, "2", "30000"],
    );
    let mut amount = 0.0;
    let got = wait_for(Duration::from_secs(25), || {
        amount += 1.0;
        let a = amount;
        let (ws, sse, e) = (&ws, &sse, &e);
        async move {
            // coffee first: the filter on sku must keep it from these subscribers.
            e.graphql_ok(SET_PRICE, json!({ "sku": "coffee", "a": a }))
                .await;
            e.graphql_ok(SET_PRICE, json!({ "sku": "tea", "a": a }))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done =
                |c: &NodeClient| c.lines().iter().filter(|l| l.starts_with('{')).count() >= 2;
            (done(ws) && done(sse)).then_some(())
        }
    })
    .await;
    for (name, client) in [("ws", ws), ("sse", sse)] {
        let (code, lines) = client.finish(Duration::from_secs(10)).await;
        assert!(got.is_some() && code == Some(0), "{name}: {lines:?}");
        let results: Vec<Value> = lines
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(results.len(), 2, "{name}: {lines:?}");
        for r in results {
            assert_eq!(r["data"]["priceChanged"]["sku"], "tea", "{name}: {r}");
            assert_eq!(r["data"]["priceChanged"]["currency"], "EUR");
        }
    }
}

#[tokio::test]
async fn extending_plugins_survive_a_swap_of_the_plugin_they_extend() {
    // a.wasm sorts before the plugin whose type it extends.
    let e = Engine::builder()
        .sdl_plugin("a", "ext", "extend type P { extra: Int }", "5")
        .sdl_plugin(
            "z",
            "def",
            "type P { id: ID } extend type Query { p: P }",
            r#"{"id": 1}"#,
        )
        .start()
        .await;
    let data = e.graphql_ok("{ p { id extra } }", json!({})).await;
    assert_eq!(data["p"], json!({ "id": "1", "extra": 5 }));

    std::fs::write(
        e.plugins_dir().join("z.toml"),
        sdl_settings(
            "def",
            "type P { id: ID } extend type Query { p: P }",
            r#"{"id": 2}"#,
        ),
    )
    .unwrap();
    let swapped = wait_for(Duration::from_secs(20), || async {
        let (_, body) = e.graphql("{ p { id extra } }", json!({})).await;
        (body["data"]["p"]["id"] == "2").then_some(body)
    })
    .await
    .expect("the new version of the defining plugin serves");
    assert_eq!(swapped["data"]["p"]["extra"], 5, "{swapped}");
    assert_eq!(e.admin_plugin("a").await.unwrap()["state"], "active");
}

#[tokio::test]
async fn a_refused_plugin_gets_in_once_what_it_conflicted_with_is_gone() {
    let e = Engine::builder()
        .sdl_plugin("a", "alpha", "extend type Query { x: Int }", "1")
        .sdl_plugin("b", "beta", "extend type Query { x: Int }", "2")
        .start()
        .await;
    assert_eq!(e.admin_plugin("b").await.unwrap()["state"], "failed");
    std::fs::remove_file(e.plugins_dir().join("a.wasm")).unwrap();
    let now = wait_for(Duration::from_secs(20), || async {
        let (_, body) = e.graphql("{ x }", json!({})).await;
        (body["data"]["x"] == 2).then_some(())
    })
    .await;
    assert!(now.is_some(), "beta serves Query.x after alpha left");
    assert_eq!(e.admin_plugin("b").await.unwrap()["state"], "active");
}
