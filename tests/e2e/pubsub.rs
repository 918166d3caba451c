use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiln_e2e::{Engine, NodeClient, TestRedis, Value, json, wait_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn publisher(extra: &str) -> Engine {
    Engine::builder()
        .plugin("pub", "fixture-pubsub", None)
        .config(extra)
        .start()
        .await
}

/// A raw WebSocket speaking `protocol`, for what the npm clients cannot do
/// (stop reading; speak the legacy protocol).
async fn connect(e: &Engine, protocol: &str) -> Socket {
    let mut request = e.ws_url("/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

pub(crate) async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Asks the fixture to publish `count` messages with `size` bytes of padding;
/// returns the status and body of its answer.
async fn publish(e: &Engine, topic: &str, count: usize, size: usize) -> (u16, String) {
    let r = e
        .client
        .post(e.url(&format!("/publish/{topic}/{count}/{size}")))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_is_served_too() {
    let e = publisher("").await;
    let mut ws = connect(&e, "graphql-ws").await;
    ws.send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    ws.send(Message::text(
        r#"{"type":"start","id":"1","payload":{"query":"subscription { flood { n } }"}}"#,
    ))
    .await
    .unwrap();
    let mut sent = 0;
    let data = loop {
        // Publish until the subscription has registered.
        let s = publish(&e, "flood", 1, 0).await;
        assert_eq!(s.0, 200, "{s:?}");
        sent += 1;
        match tokio::time::timeout(Duration::from_millis(200), next_json(&mut ws)).await {
            Ok(v) => break v,
            Err(_) if sent < 50 => continue,
            Err(_) => panic!("no data after {sent} publishes"),
        }
    };
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["id"], "1");
    assert_eq!(data["payload"]["data"]["flood"]["n"], 0);
}

#[tokio::test]
async fn a_slow_subscriber_is_dropped_with_an_error_and_the_publisher_goes_on() {
    let e = publisher("[pubsub]\nsubscriber_buffer = 16").await;
    let mut ws = connect(&e, "graphql-transport-ws").await;
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    ws.send(Message::text(
        r#"{"type":"subscribe","id":"s","payload":{"query":"subscription { flood { n } }"}}"#,
    ))
    .await
    .unwrap();
    // Make sure the subscription is registered: one message arrives.
    let mut first = None;
    for _ in 0..50 {
        publish(&e, "flood", 1, 0).await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(200), next_json(&mut ws)).await {
            first = Some(v);
            break;
        }
    }
    assert_eq!(first.expect("a first message")["type"], "next");

    // Now stop reading while 3000 messages of 8 KiB (24 MiB, far more than
    // the socket buffers hold) are published. Every publish call succeeds.
    for _ in 0..6 {
        let s = publish(&e, "flood", 500, 8192).await;
        assert_eq!(s.0, 200, "{s:?}");
    }
    // Reading again: some messages, then the error, then the end.
    let mut messages = 0;
    let error = loop {
        let v = next_json(&mut ws).await;
        match v["type"].as_str() {
            Some("next") if v["payload"]["errors"].is_array() => break v,
            Some("next") => messages += 1,
            other => panic!("unexpected {other:?}: {v}"),
        }
    };
    let message = error["payload"]["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("messages behind on topic 'flood'"),
        "{message}"
    );
    assert_eq!(
        error["payload"]["errors"][0]["extensions"]["code"],
        "SUBSCRIBER_TOO_SLOW"
    );
    assert_eq!(next_json(&mut ws).await["type"], "complete");
    assert!(
        messages < 3000,
        "it was dropped, not fed everything ({messages})"
    );
    // The engine is fine and still publishes.
    assert_eq!(publish(&e, "flood", 1, 0).await.0, 200);
}

#[tokio::test]
async fn bad_topics_and_messages_are_refused_with_the_reason() {
    let e = publisher("[pubsub]\nmax_message = 1024").await;
    let s = publish(&e, "bad%20topic", 1, 0).await;
    assert_eq!(s.0, 400, "{s:?}");
    assert!(s.1.contains("contains ' '"), "{s:?}");
    let s = publish(&e, "flood", 1, 2000).await;
    assert_eq!(s.0, 400, "{s:?}");
    assert!(
        s.1.contains("the limit is 1024 (pubsub.max_message)"),
        "{s:?}"
    );
    let r = e
        .client
        .post(e.url("/publish-raw/flood"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not JSON"));
}

#[tokio::test]
async fn a_subscriber_on_one_engine_receives_what_a_plugin_on_another_publishes() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let config = format!("[redis]\nurl = {:?}", redis.url());
    let a = publisher(&config).await;
    let b = publisher(&config).await;
    let on_b = flood_subscriber(&b, "1000");
    let on_a = flood_subscriber(&a, "1000");
    let received = flood_received;
    // Each publish on A carries a fresh n, until both subscribers have one.
    let mut n = 0;
    let got = wait_for(Duration::from_secs(30), || {
        n += 1;
        let body = json!({ "n": n }).to_string();
        let (a, on_a, on_b) = (&a, &on_a, &on_b);
        async move {
            let r = a
                .client
                .post(a.url("/publish-raw/flood"))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            tokio::time::sleep(Duration::from_millis(150)).await;
            (!received(on_a).is_empty() && !received(on_b).is_empty()).then_some(())
        }
    })
    .await;
    assert!(
        got.is_some(),
        "A: {:?}\nB: {:?}\n{}",
        on_a.lines(),
        on_b.lines(),
        b.log_text()
    );
    // Three more, then each subscriber has each exactly once: the engine
    // that published does not get its own message back from Redis.
    for extra in 1..=3 {
        let body = json!({ "n": 1000 + extra }).to_string();
        a.client
            .post(a.url("/publish-raw/flood"))
            .body(body)
            .send()
            .await
            .unwrap();
    }
    let complete = wait_for(Duration::from_secs(10), || async {
        (received(&on_a).contains(&1003) && received(&on_b).contains(&1003)).then_some(())
    })
    .await;
    assert!(
        complete.is_some(),
        "A: {:?}\nB: {:?}",
        received(&on_a),
        received(&on_b)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, c) in [("A", &on_a), ("B", &on_b)] {
        let got = received(c);
        let mut dedup = got.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len(), "{name} got duplicates: {got:?}");
        for x in [1001, 1002, 1003] {
            assert!(got.contains(&x), "{name} missed {x}: {got:?}");
        }
    }
}

#[tokio::test]
async fn a_websocket_that_never_says_connection_init_is_dropped() {
    let e = publisher("[graphql]\nconnection_init_timeout_ms = 300").await;
    let mut silent = connect(&e, "graphql-transport-ws").await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match silent.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the silent connection is still open after 10 s"
    );
    // One that does say it stays.
    let mut ws = connect(&e, "graphql-transport-ws").await;
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    tokio::time::sleep(Duration::from_millis(600)).await;
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn one_websocket_runs_a_bounded_number_of_operations() {
    let e = publisher("[graphql]\nmax_operations_per_connection = 2").await;
    let mut ws = connect(&e, "graphql-transport-ws").await;
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    for id in ["1", "2", "3"] {
        let subscribe = json!({
            "type": "subscribe", "id": id,
            "payload": { "query": "subscription { flood { n } }" }
        });
        ws.send(Message::text(subscribe.to_string())).await.unwrap();
    }
    // The third is refused at once, with the reason, and completes.
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["id"], "3", "{refused}");
    let message = refused["payload"]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("already runs 2 operations"), "{refused}");
    // Completing one frees its place: the next subscription runs.
    ws.send(Message::text(r#"{"type":"complete","id":"1"}"#))
        .await
        .unwrap();
    let again = json!({
        "type": "subscribe", "id": "again",
        "payload": { "query": "subscription { flood { n } }" }
    });
    ws.send(Message::text(again.to_string())).await.unwrap();
    let mut freed = false;
    'rounds: for _ in 0..50 {
        // Publish until the new subscription has registered and sees one.
        publish(&e, "flood", 1, 0).await;
        while let Ok(v) = tokio::time::timeout(Duration::from_millis(200), next_json(&mut ws)).await
        {
            if v["id"] == "again" {
                assert_eq!(v["type"], "next", "{v}");
                assert!(v["payload"]["errors"].is_null(), "refused: {v}");
                freed = true;
                break 'rounds;
            }
        }
    }
    assert!(freed, "a new subscription ran after one completed");
}

#[tokio::test]
async fn while_redis_is_down_local_subscribers_still_get_messages_and_the_bridge_comes_back() {
    let Some(mut redis) = TestRedis::start() else {
        return;
    };
    let config = format!("[redis]\nurl = {:?}", redis.url());
    let a = publisher(&config).await;
    let b = publisher(&config).await;
    let on_a = flood_subscriber(&a, "100000");
    let on_b = flood_subscriber(&b, "100000");
    let received = flood_received;
    let both_got = |min: i64| {
        let (on_a, on_b) = (&on_a, &on_b);
        move || received(on_a).iter().any(|&n| n >= min) && received(on_b).iter().any(|&n| n >= min)
    };
    assert!(
        publish_until(&a, 1, both_got(1)).await,
        "warm-up: A {:?} B {:?}",
        received(&on_a),
        received(&on_b)
    );

    redis.stop();
    let a_got_local = || received(&on_a).iter().any(|&n| n >= 1000);
    assert!(
        publish_until(&a, 1000, a_got_local).await,
        "with Redis down, A's own subscriber still gets A's messages: {:?}",
        received(&on_a)
    );

    redis.restart();
    assert!(
        publish_until(&a, 2000, both_got(2000)).await,
        "after Redis is back, B hears from A again: A {:?} B {:?}\n{}",
        received(&on_a),
        received(&on_b),
        b.log_text()
    );
}

/// Publishes `{"n": from}`, `{"n": from + 1}`, … on `e` until `done` holds
/// (at most 40 s); every publish must succeed, whatever Redis is doing.
async fn publish_until(e: &Engine, from: i64, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut n = from;
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        let r = e
            .client
            .post(e.url("/publish-raw/flood"))
            .body(json!({ "n": n }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "publishing never fails because of Redis");
        n += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    true
}

/// A graphql-ws client (npm) following `flood` on `e`, for up to `count`
/// messages.
fn flood_subscriber(e: &Engine, count: &str) -> NodeClient {
    NodeClient::start(
        "subscribe.mjs",
        &[
            "ws",
            &e.ws_url("/graphql/ws"),
            "subscription { flood { n } }",
            count,
            "120000",
        ],
    )
}

/// The `n` of every `flood` message `c` printed so far.
fn flood_received(c: &NodeClient) -> Vec<i64> {
    c.lines()
        .iter()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["data"]["flood"]["n"].as_i64())
        .collect()
}
