//! One test per row of the abuse table in the resource-budget issue: each
//! probe is run (scaled down, loopback only, bounded in count and time),
//! and the test asserts the refusal, that the engine stays responsive
//! (the health check answers while the abuse runs) and, where memory is
//! the point, that the engine's RSS stays under a bound stated here.
//!
//! The table's last rows are tested beside the features they harden: a JWT
//! with `crit` in `engine/src/identity/jwt.rs`, HTTP/1.1
//! without `Host` in `hardening.rs`, `%00` and bad escapes in
//! `access_paths.rs`. Memory returned after load is measured, not tested:
//! `bench/memory.sh`, numbers in docs/performance.md.

use std::time::Duration;

use futures_util::SinkExt;
use kiln_e2e::{Engine, Value, json, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What "answers promptly" means here: far above a healthy engine's
/// milliseconds, far below the seconds the probes took before the budgets.
const RESPONSIVE: Duration = Duration::from_secs(2);

async fn hello(extra: &str) -> Engine {
    Engine::builder()
        .plugin("hello", "hello-rust", None)
        .config(extra)
        .start()
        .await
}

/// `query { ...F0 } fragment F0 on Query { ...F1 ...F1 } … { __typename }`:
/// 2^levels fields in a document of a kilobyte.
fn fragment_fan_out(levels: usize) -> String {
    let mut q = String::from("query { ...F0 }");
    for i in 0..levels {
        q.push_str(&format!(
            " fragment F{i} on Query {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    q.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
    q
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_graphql_fragment_fan_out_is_refused_before_validation() {
    let e = hello("").await;
    let rss_before = e.rss_kib();
    let query = fragment_fan_out(24);
    assert!(query.len() < 1100, "the probe is about a kilobyte");
    let attacks: Vec<_> = (0..2)
        .map(|_| {
            let request = e
                .client
                .post(e.url("/graphql"))
                .header("accept", "application/graphql-response+json")
                .json(&json!({ "query": query }));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    assert!(e.health_latency().await < RESPONSIVE);
    for attack in attacks {
        let r = attack.await.unwrap();
        assert_eq!(r.status(), 400, "a request error");
        let body: Value = r.json().await.unwrap();
        assert_eq!(codes(&body), ["TOO_MANY_FIELDS"], "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("16777216 fields")
                && message.contains("graphql.max_fields allows 2000"),
            "{message}"
        );
    }
    let grown = e.rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    // An honest query still runs.
    let data = e.graphql_ok("{ hello(name: \"ada\") }", json!({})).await;
    assert_eq!(data["hello"], "Hello, ada!");
}

#[tokio::test]
async fn plugin_calls_and_plugin_bytes_are_budgeted_per_operation() {
    let e = hello("[http]\nmax_response_body = 262144\n").await;
    // 250 aliases of a plugin field: 200 calls run, 50 are refused.
    let aliases: String = (0..250)
        .map(|i| format!(" a{i}: hello(name: \"x\")"))
        .collect();
    let (status, body) = e.graphql(&format!("{{{aliases} }}"), json!({})).await;
    assert_eq!(status, 200);
    let codes = codes(&body);
    assert_eq!(codes.len(), 50, "{body}");
    assert!(
        codes.iter().all(|c| c == "TOO_MANY_PLUGIN_CALLS"),
        "{codes:?}"
    );

    // 100 aliases with a 20 kB argument: the plugins' answers fill the
    // response limit after about a dozen calls; the client gets an error,
    // not a 2 MB body.
    let aliases: String = (0..100)
        .map(|i| format!(" a{i}: hello(name: $n)"))
        .collect();
    let started = std::time::Instant::now();
    let r = e
        .client
        .post(e.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({
            "query": format!("query($n: String!) {{{aliases} }}"),
            "variables": { "n": "n".repeat(20_000) },
        }))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.len() < 64 * 1024, "{} bytes came back", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(
        kiln_codes_contain(&body, "RESPONSE_TOO_LARGE"),
        "{}",
        &text[..text.len().min(600)]
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(e.health_latency().await < RESPONSIVE);
}

fn kiln_codes_contain(body: &Value, code: &str) -> bool {
    codes(body).iter().any(|c| c == code)
}

#[tokio::test]
async fn errors_do_not_amplify_what_the_client_sent() {
    let e = hello("").await;
    // A 100 kB field name comes back cut, not whole.
    let name = "z".repeat(100_000);
    let (_, body) = e.graphql(&format!("{{ {name} }}"), json!({})).await;
    let text = body.to_string();
    assert!(text.len() < 4096, "{} bytes", text.len());
    assert!(text.contains("more bytes)"), "{text}");

    // 20,000 repeated directives: one refusal (graphql.max_directives).
    let directives = " @skip(if: false)".repeat(20_000);
    let (_, body) = e
        .graphql(&format!("{{ hello{directives} }}"), json!({}))
        .await;
    let text = body.to_string();
    assert!(text.len() < 4096, "{} bytes: {}", text.len(), &text[..600]);

    // A 100,000-deep document: the parser's refusal, cut.
    let deep = format!("{}{}", "{ a ".repeat(100_000), "}".repeat(100_000));
    let (_, body) = e.graphql(&deep, json!({})).await;
    let text = body.to_string();
    assert!(text.len() < 4096, "{} bytes", text.len());
    assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()));

    // However many errors validation finds, at most graphql.max_errors.
    let unknown: String = (0..500).map(|i| format!(" u{i}")).collect();
    let (_, body) = e.graphql(&format!("{{{unknown} }}"), json!({})).await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[99]["extensions"]["code"], "TOO_MANY_ERRORS");
    assert!(e.health_latency().await < RESPONSIVE);
}

fn initialize(id: u64) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "probe", "version": "1" } }
    })
    .to_string()
}

async fn post_mcp(e: &Engine, body: String) -> reqwest::Response {
    e.client
        .post(e.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn mcp_sessions_are_capped_per_client_and_given_back_when_they_expire() {
    let e = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .config(
            "[mcp]\nmax_sessions_per_client = 20\nsessions_per_minute = 10000\nsession_idle_timeout_ms = 1500\n",
        )
        .start()
        .await;
    let rss_before = e.rss_kib();
    let mut opened = 0;
    let mut refused = 0;
    for id in 0..60 {
        let r = post_mcp(&e, initialize(id)).await;
        match r.status().as_u16() {
            200 => opened += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["jsonrpc"], "2.0");
                assert_eq!(body["id"], id);
                assert_eq!(body["error"]["code"], -32000);
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("mcp.max_sessions_per_client"), "{message}");
                refused += 1;
            }
            other => panic!("initialize answered {other}"),
        }
    }
    assert_eq!((opened, refused), (20, 40));
    let grown = e.rss_kib().saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB for 20 sessions");
    assert_eq!(e.admin_get("/_kiln/v1/admin/mcp").await["sessions"], 20);
    assert!(e.health_latency().await < RESPONSIVE);
    // Silent sessions expire and give their places back.
    let released = wait_for(Duration::from_secs(15), || async {
        (e.admin_get("/_kiln/v1/admin/mcp").await["sessions"] == 0).then_some(())
    })
    .await;
    assert!(released.is_some(), "the sessions did not expire");
    assert_eq!(post_mcp(&e, initialize(99)).await.status(), 200);
    // One line per session at most, and only at DEBUG: rmcp's own INFO
    // lines are off by default.
    assert!(e.log_lines_with(&["create new session"]).is_empty());
    assert!(
        e.log_lines_with(&["Service initialized as server"])
            .is_empty()
    );
    assert!(!e.log_lines_with(&["MCP session opened"]).is_empty());
}

#[tokio::test]
async fn mcp_session_creation_is_rate_limited() {
    let e = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .config("[mcp]\nsessions_per_minute = 5\n")
        .start()
        .await;
    let mut statuses = Vec::new();
    for id in 0..8 {
        statuses.push(post_mcp(&e, initialize(id)).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
}

#[tokio::test]
async fn anonymous_callers_open_no_mcp_session_on_a_locked_engine() {
    let e = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .access("[access]\ndefault = \"authenticated\"\n")
        .start()
        .await;
    let r = post_mcp(&e, initialize(1)).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("authenticated callers only"),
        "{body}"
    );
    assert_eq!(e.admin_get("/_kiln/v1/admin/mcp").await["sessions"], 0);
}

#[tokio::test]
async fn malformed_json_rpc_gets_400_with_json_rpc_codes() {
    let e = Engine::builder()
        .plugin("fixture-mcp", "fixture-mcp", None)
        .start()
        .await;
    let cases = [
        ("{not json", -32700),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, -32600),
    ];
    for (body, code) in cases {
        let r = post_mcp(&e, body.to_string()).await;
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["jsonrpc"], "2.0", "{body}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    // A 100 kB prompt name comes back cut.
    let opened = post_mcp(&e, initialize(1)).await;
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let in_session = |body: Value| {
        e.client
            .post(e.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session)
            .body(body.to_string())
            .send()
    };
    let r = in_session(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = in_session(
        json!({ "jsonrpc": "2.0", "id": 2, "method": "prompts/get", "params": { "name": "p".repeat(100_000) } }),
    )
    .await
    .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.len() < 4096, "{} bytes", text.len());
    assert!(text.contains("unknown prompt"), "{text}");
}

#[tokio::test]
async fn a_slow_header_flood_leaves_the_engine_answering() {
    let e = hello("[http]\nmax_connections = 40\nheader_read_timeout_ms = 1500\n").await;
    let addr = e.addr().to_string();
    // 120 connections that start a request and never finish its headers.
    let mut flood = Vec::new();
    for _ in 0..120 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /hello/x HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        flood.push(s);
    }
    for _ in 0..5 {
        assert!(e.health_latency().await < RESPONSIVE);
    }
    // Past the header timeout every one of them is closed by the engine.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for s in &mut flood {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        match read {
            Ok(Ok(_)) | Ok(Err(_)) => {} // EOF, a 503, or a reset: closed.
            Err(_) => panic!("a slow-header connection is still open"),
        }
    }
    assert_eq!(
        e.log_lines_with(&["the connection limit is reached"]).len(),
        1,
        "one warning per burst"
    );
    assert!(
        !e.log_lines_with(&["connection limits", "open_files"])
            .is_empty()
    );
}

use crate::pubsub::{Socket, next_json};

async fn websocket(e: &Engine) -> Result<Socket, u16> {
    let mut request = e.ws_url("/graphql/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(other) => panic!("connect: {other}"),
    }
}

#[tokio::test]
async fn websockets_and_subscriptions_are_capped_per_client() {
    let e = Engine::builder()
        .plugin("pub", "fixture-pubsub", None)
        .config("[streams]\nmax_open_per_client = 5\nmax_subscriptions_per_client = 8\n")
        .start()
        .await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(websocket(&e).await.expect("a place"));
    }
    assert_eq!(websocket(&e).await.err(), Some(429), "the sixth is refused");
    // SSE streams count against the same bound.
    let r = e
        .client
        .get(e.url("/graphql/stream?query=subscription%7Bflood%7Bn%7D%7D"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");

    // Subscriptions of one client over two sockets: 8 run, the 9th is refused.
    for s in &mut sockets[..2] {
        s.send(Message::text(r#"{"type":"connection_init"}"#))
            .await
            .unwrap();
        assert_eq!(next_json(s).await["type"], "connection_ack");
    }
    let subscribe = |i: usize| {
        Message::text(
            json!({
                "type": "subscribe", "id": format!("s{i}"),
                "payload": { "query": "subscription { flood { n } }" }
            })
            .to_string(),
        )
    };
    // Four on the second socket; its pong says they have taken their places
    // (a socket's messages are handled in order).
    for i in 0..4 {
        sockets[1].send(subscribe(i)).await.unwrap();
    }
    sockets[1]
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut sockets[1]).await["type"], "pong");
    // Five on the first: the ninth of this client is refused.
    for i in 4..9 {
        sockets[0].send(subscribe(i)).await.unwrap();
    }
    let refused = next_json(&mut sockets[0]).await;
    assert_eq!(refused["id"], "s8", "{refused}");
    let message = refused["payload"]["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("streams.max_subscriptions_per_client"),
        "{message}"
    );

    // Closed sockets give their places back.
    for s in sockets.drain(..) {
        drop(s);
    }
    let back = wait_for(Duration::from_secs(10), || async {
        websocket(&e).await.ok()
    })
    .await;
    assert!(back.is_some(), "places were not given back");
    assert!(e.health_latency().await < RESPONSIVE);
}

#[tokio::test]
async fn body_limits_hold_over_http2() {
    let e = hello("").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // 3 MB against the 1 MiB default, to a plugin route, GraphQL and MCP.
    for path in ["/echo", "/graphql", "/mcp"] {
        let r = h2
            .post(e.url(path))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(vec![b' '; 3 << 20])
            .send()
            .await
            .unwrap_or_else(|err| panic!("{path}: {err:?}"));
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 413, "{path}");
    }
    // The connection is still good for the next request.
    let r = h2.get(e.url("/hello/ada")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_busy_keep_alive_connection_outlives_the_idle_timeouts() {
    let e = hello("[http]\nheader_read_timeout_ms = 1000\nidle_timeout_ms = 1500\n").await;
    let mut s = tokio::net::TcpStream::connect(e.addr()).await.unwrap();
    // One request every 200 ms for 3 s, all on this one connection: it is
    // never idle for long, so neither timeout may close it.
    for i in 0..15 {
        s.write_all(b"GET /hello/ada HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("Hello, ada!") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "request {i}: the engine closed a busy connection");
            answer.extend_from_slice(&buf[..n]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Left alone, it is closed once the header timeout has passed.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within the timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "an idle connection is closed");
}
