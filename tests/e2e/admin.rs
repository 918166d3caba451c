use std::time::Duration;

use kiln_e2e::{ADMIN_TOKEN, Engine, Value, wait_for};

#[tokio::test]
async fn the_admin_api_requires_the_token() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    let url = e.url("/_kiln/v1/admin/plugins");
    let r = e.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = e
        .client
        .get(&url)
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let v: Value = r.json().await.unwrap();
    let p = &v["plugins"][0];
    assert_eq!(p["file"], "hello.wasm");
    assert_eq!(p["name"], "hello-rust");
    assert_eq!(p["version"], "0.1.0");
    assert_eq!(p["state"], "active");
    assert_eq!(p["hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        p["routes"],
        serde_json::json!(["GET /hello/{name}", "POST /echo"])
    );
    assert_eq!(p["limits"]["timeout_ms"], 10000);
    assert!(p["last_error"].is_null());

    // The health check is open.
    let r = e.get("/_kiln/v1/health").await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_closed() {
    let e = Engine::builder().without_admin_token().start().await;
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/plugins"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("disabled"));
}

const CONF: &str = "fixture-configurable";

async fn error_of(e: &Engine, stem: &str) -> String {
    wait_for(Duration::from_secs(10), || async {
        let p = e.admin_plugin(stem).await?;
        p["last_error"].as_str().map(String::from)
    })
    .await
    .unwrap_or_else(|| panic!("no error reported for {stem}; log:\n{}", e.log_text()))
}

#[tokio::test]
async fn the_same_route_in_two_plugins_refuses_the_later_naming_both() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .plugin(
            "zz-copycat",
            CONF,
            Some("[config]\nname = \"copycat\"\nroutes = \"GET /other,GET /hello/{who}\""),
        )
        .start()
        .await;
    let err = error_of(&e, "zz-copycat").await;
    assert!(
        err.contains("'copycat'") && err.contains("'hello-rust'"),
        "{err}"
    );
    assert!(
        err.contains("GET /hello/{who}") && err.contains("GET /hello/{name}"),
        "{err}"
    );
    // The earlier plugin keeps its route, and nothing of the refused one is mounted.
    assert_eq!(e.get("/hello/x").await.status(), 200);
    assert_eq!(e.get("/other").await.status(), 404);
    let p = e.admin_plugin("zz-copycat").await.unwrap();
    assert_eq!(p["state"], "failed");
}

#[tokio::test]
async fn bad_manifests_and_trapping_describe_are_refused_with_reasons() {
    let e = Engine::builder()
        .plugin(
            "reserved",
            CONF,
            Some("[config]\nname = \"r\"\nroutes = \"GET /_kiln/v1/plugins\""),
        )
        .plugin(
            "badpath",
            CONF,
            Some("[config]\nname = \"b\"\nroutes = \"GET no-slash\""),
        )
        .plugin(
            "badname",
            CONF,
            Some("[config]\nname = \"Not Valid\"\nroutes = \"GET /ok\""),
        )
        .plugin("panics", CONF, Some("[config]\ndescribe = \"panic\""))
        .plugin(
            "dup-a",
            CONF,
            Some("[config]\nname = \"same\"\nroutes = \"GET /a\""),
        )
        .plugin(
            "dup-b",
            CONF,
            Some("[config]\nname = \"same\"\nroutes = \"GET /b\""),
        )
        .plugin("badlimits", CONF, Some("[limits]\nmax_concurrency = 0"))
        .plugin("typo", CONF, Some("[limitz]\nfuel = 1"))
        .start()
        .await;
    let cases = [
        ("reserved", "reserves for itself"),
        ("badpath", "must start with '/'"),
        ("badname", "name \"Not Valid\""),
        ("panics", "describe() failed"),
        (
            "dup-b",
            "plugin name 'same' of dup-b.wasm is already used by dup-a.wasm",
        ),
        ("badlimits", "limits.max_concurrency"),
        ("typo", "limitz"),
    ];
    for (stem, want) in cases {
        let err = error_of(&e, stem).await;
        assert!(err.contains(want), "{stem}: {err}");
    }
    assert_eq!(e.get("/a").await.text().await.unwrap(), "same:GET /a");
    assert_eq!(e.get("/b").await.status(), 404);
}

#[tokio::test]
async fn a_new_version_refused_for_a_conflict_leaves_the_serving_one_and_its_status() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .plugin(
            "conf",
            CONF,
            Some("[config]\nname = \"conf\"\nroutes = \"GET /mine\""),
        )
        .start()
        .await;
    let before = e.admin_plugin("conf").await.unwrap();
    assert_eq!(before["state"], "active");
    // Load times are in seconds: let one pass so a reset would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(
        e.plugins_dir().join("conf.toml"),
        "[config]\nname = \"conf\"\nroutes = \"GET /mine,GET /hello/{x}\"",
    )
    .unwrap();
    let err = error_of(&e, "conf").await;
    assert!(err.contains("'hello-rust'"), "{err}");
    let after = e.admin_plugin("conf").await.unwrap();
    assert_eq!(after["state"], "serving_previous");
    assert_eq!(after["loaded_at"], before["loaded_at"]);
    assert_eq!(after["routes"], before["routes"]);
    assert_eq!(e.get("/mine").await.text().await.unwrap(), "conf:GET /mine");
    assert_eq!(e.get("/hello/x").await.status(), 200);
}

/// The first admin credential is an API key made with `kiln keys create`;
/// a key without the admin role gets 403, a revoked one 401 at once.
#[tokio::test]
async fn api_keys_with_the_admin_role_open_the_admin_api() {
    let e = Engine::builder().without_admin_token().start().await;
    let create = |name: &str, roles: &str| {
        let out = e.cli(&["keys", "create", "--name", name, "--roles", roles]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let admin = create("ops", "admin");
    let reader = create("dashboard", "reader");
    let get = |key: String| {
        e.client
            .get(e.url("/_kiln/v1/admin/plugins"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(get(admin.clone()).await.unwrap().status(), 200);

    let r = get(reader).await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'dashboard' lacks the admin role")
    );

    let forged = format!("{}_{}", &admin[..11], "x".repeat(43));
    let r = get(forged).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "unknown API key");

    // Revoked from the CLI (another process): this engine trusts its cached
    // check until key_cache_ttl_ms, so it is restarted to see it; revoking
    // through the engine itself (admin API, next step) takes effect at once.
    let out = e.cli(&["keys", "revoke", "ops"]);
    assert!(out.status.success());
    let mut e = e;
    e.restart();
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/plugins"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "the API key has been revoked");
}

/// A GET of an admin path as client `ip` (through `X-Forwarded-For`, which
/// these tests configure as `http.client_ip_header`).
async fn admin_as(e: &Engine, ip: &str, bearer: Option<&str>, path: &str) -> reqwest::Response {
    let mut r = e.client.get(e.url(path)).header("x-forwarded-for", ip);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    r.send().await.unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The audit rows of `action` whose `detail.ip` is `ip`, read as another client.
async fn audit_rows(e: &Engine, action: &str, ip: &str) -> Vec<Value> {
    let r = admin_as(
        e,
        "192.0.2.250",
        Some(ADMIN_TOKEN),
        "/_kiln/v1/admin/audit?limit=1000",
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["action"] == action && ev["detail"]["ip"] == ip)
        .cloned()
        .collect()
}

const BEHIND_PROXY: &str = "[http]\nclient_ip_header = \"x-forwarded-for\"\n";

#[tokio::test]
async fn admin_requests_beyond_the_admin_limit_get_429_and_health_stays_open() {
    let e = Engine::builder()
        .admin_rate_limit("requests = 1\nwindow_s = 60\nburst = 5")
        .start()
        .await;
    for _ in 0..5 {
        let r = e
            .client
            .get(e.url("/_kiln/v1/admin/plugins"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "5");
        assert_eq!(r.headers()["ratelimit-policy"], "1;w=60");
    }
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait = retry_after(&r);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin API allows 1 per 60 s"),
        "{body}"
    );
    // The health check is neither limited nor counted.
    for _ in 0..30 {
        assert_eq!(e.get("/_kiln/v1/health").await.status(), 200);
    }
}

#[tokio::test]
async fn failed_admin_authentications_throttle_the_client_even_with_the_right_token() {
    let e = Engine::builder()
        .config(&format!(
            "{BEHIND_PROXY}[admin.auth_failures]\nmax = 4\nwindow_s = 3\n"
        ))
        .start()
        .await;
    let out = e.cli(&["keys", "create", "--name", "ci", "--roles", "reader"]);
    let reader = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let reader_id = reader[..11].to_string(); // kk_ and 8 hex digits: the secret may hold '_' too
    let guessed_token = "guessed-admin-token-SECRET1";
    let unknown_key = "kk_deadbeef_UNKNOWNKEYSECRETUNKNOWNKEYSECRET0123456789a";
    let plugins = "/_kiln/v1/admin/plugins";
    let attacker = "198.51.100.7";
    for (bearer, status) in [
        (None, 401),
        (Some(guessed_token), 401),
        (Some(unknown_key), 401),
        (Some(reader.as_str()), 403),
    ] {
        assert_eq!(
            admin_as(&e, attacker, bearer, plugins).await.status(),
            status
        );
    }
    // Throttled before any credential check: the right token does not help.
    let r = admin_as(&e, attacker, Some(ADMIN_TOKEN), plugins).await;
    assert_eq!(r.status(), 429);
    let wait = retry_after(&r);
    assert!((1..=3).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failures", "{body}");
    // Another client is not affected.
    assert_eq!(
        admin_as(&e, "198.51.100.8", Some(ADMIN_TOKEN), plugins)
            .await
            .status(),
        200
    );

    // The failures are audited: what was tried (never the secret), from
    // where, why; and one row when the throttle started.
    let failures = audit_rows(&e, "admin.auth_failed", attacker).await;
    let mut seen: Vec<(String, String)> = failures
        .iter()
        .map(|ev| {
            (
                ev["actor"].as_str().unwrap().to_string(),
                ev["detail"]["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.reverse(); // oldest first
    assert_eq!(seen.len(), 4, "{failures:?}");
    assert_eq!(seen[0], ("none".to_string(), "no credential".to_string()));
    assert_eq!(seen[1].0, "admin-token");
    assert!(seen[1].1.contains("invalid admin token"), "{seen:?}");
    assert_eq!(
        seen[2],
        ("kk_deadbeef".to_string(), "unknown API key".to_string())
    );
    assert_eq!(seen[3].0, reader_id);
    assert!(seen[3].1.contains("lacks the admin role"), "{seen:?}");
    assert!(failures.iter().all(|ev| ev["target"] == plugins));
    let throttled = audit_rows(&e, "admin.auth_throttled", attacker).await;
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!(throttled[0]["actor"], attacker);
    assert_eq!(throttled[0]["detail"]["failures"], 4);
    let text = format!("{failures:?}{throttled:?}");
    for secret in [guessed_token, unknown_key, reader.as_str(), ADMIN_TOKEN] {
        assert!(!text.contains(secret), "a secret in the audit log: {text}");
    }

    // Once the window has passed, the right token gets in again.
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 200)).await;
    assert_eq!(
        admin_as(&e, attacker, Some(ADMIN_TOKEN), plugins)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn two_hundred_failed_admin_authentications_leave_a_bounded_audit_log() {
    let e = Engine::builder().config(BEHIND_PROXY).start().await;
    let attacker = "203.0.113.9";
    let guessed = "guessed-admin-token-SECRET2";
    let mut statuses = Vec::new();
    // In waves of 20 at once, so some race the throttle.
    for _ in 0..10 {
        let wave = (0..20).map(|_| admin_as(&e, attacker, Some(guessed), "/_kiln/v1/admin/keys"));
        statuses.extend(
            futures_util::future::join_all(wave)
                .await
                .into_iter()
                .map(|r| r.status().as_u16()),
        );
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + throttled, 200, "{statuses:?}");
    assert!(
        refused >= 5 && throttled >= 150,
        "{refused} x 401, {throttled} x 429"
    );

    // The default allows 5 failures per IP and minute: 5 rows and one
    // summary, however many came.
    let failures = audit_rows(&e, "admin.auth_failed", attacker).await;
    let summaries = audit_rows(&e, "admin.auth_throttled", attacker).await;
    assert_eq!((failures.len(), summaries.len()), (5, 1), "{failures:?}");
    assert!(
        !format!("{failures:?}{summaries:?}").contains(guessed),
        "the guessed token is in the audit log"
    );
}

/// The admin API's per-plugin counters come from the observer every plugin
/// call reports to, on every front door: routes, GraphQL and MCP.
#[tokio::test]
async fn every_plugin_call_is_counted_by_outcome_on_every_front_door() {
    let e = Engine::builder()
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nfuel = 50000000"),
        )
        .plugin("basic", "fixture-basic", None)
        .plugin("catalog", "catalog-rust", None)
        .plugin("tools", "tools-rust", None)
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(e.get("/limits/ok").await.status(), 200);
    }
    assert_eq!(e.get("/limits/panic").await.status(), 500);
    assert_eq!(e.get("/limits/spin").await.status(), 500);
    assert_eq!(e.get("/basic/fail").await.status(), 409);
    // A request no plugin serves is no plugin call.
    assert_eq!(e.get("/limits/nowhere").await.status(), 404);
    let data = e
        .graphql_ok("{ products { sku } }", serde_json::json!({}))
        .await;
    assert!(data["products"].is_array(), "{data}");
    let client = crate::mcp::rmcp_client(&e, None).await;
    let stats = crate::mcp::call(
        &client,
        "math.stats",
        serde_json::json!({ "numbers": [1, 2] }),
    )
    .await
    .expect("tools/call");
    assert_eq!(stats.is_error, Some(false));

    let calls = |stem: &'static str| {
        let e = &e;
        async move { e.admin_plugin(stem).await.expect("listed")["calls"].clone() }
    };
    let limits = calls("limits").await;
    assert_eq!(limits["total"], 5, "{limits}");
    assert_eq!(limits["ok"], 3, "{limits}");
    assert_eq!(limits["failed"]["trap"], 1, "{limits}");
    assert_eq!(limits["failed"]["out_of_fuel"], 1, "{limits}");
    assert_eq!(limits["running"], 0, "{limits}");
    assert_eq!(limits["waiting"], 0, "{limits}");
    // The spin alone burned its whole allowance.
    assert!(limits["fuel"].as_u64().unwrap() >= 50_000_000, "{limits}");
    let basic = calls("basic").await;
    assert_eq!(
        (basic["total"].clone(), basic["plugin_errors"].clone()),
        (1.into(), 1.into()),
        "{basic}"
    );
    let catalog = calls("catalog").await;
    assert_eq!(catalog["total"], 1, "{catalog}");
    assert_eq!(catalog["ok"], 1, "{catalog}");
    let tools = calls("tools").await;
    assert_eq!(tools["total"], 1, "{tools}");
    assert_eq!(tools["ok"], 1, "{tools}");
}

/// A call whose client goes away is dropped with its request, and the
/// observers still hear its end: it is counted as cancelled, not left
/// running forever.
#[tokio::test]
async fn a_call_dropped_with_its_client_is_counted_as_cancelled() {
    let e = Engine::builder()
        .plugin("limits", "fixture-limits", None)
        .start()
        .await;
    let gone = e
        .client
        .get(e.url("/limits/sleep/5000"))
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(gone.is_err(), "the request should have timed out: {gone:?}");
    let calls = wait_for(Duration::from_secs(4), || async {
        let calls = e.admin_plugin("limits").await?["calls"].clone();
        (calls["running"] == 0 && calls["total"] == 1).then_some(calls)
    })
    .await;
    let Some(calls) = calls else {
        panic!("the call never ended: {}", e.admin_plugins().await);
    };
    assert_eq!(calls["failed"]["cancelled"], 1, "{calls}");
    assert_eq!(calls["ok"], 0, "{calls}");
}
