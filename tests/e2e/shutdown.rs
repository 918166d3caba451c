//! Stopping the engine with SIGTERM: requests in flight are answered, new
//! connections are refused, subscriptions and event streams are ended the
//! way their protocols say, and the process exits 0 — within
//! `http.shutdown_grace_ms` even when something outlasts it.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kiln_e2e::{Engine, Value, wait_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const FLOOD: &str = "subscription { flood { n } }";

/// An engine with a slow route (`/limits/sleep/{ms}`) and a subscription
/// (`flood`, fed by `POST /publish/flood/1/0`).
async fn engine(extra_config: &str) -> Engine {
    Engine::builder()
        .plugin("limits", "fixture-limits", None)
        .plugin("pub", "fixture-pubsub", None)
        .config(extra_config)
        .start()
        .await
}

async fn publish(e: &Engine) {
    let r = e
        .client
        .post(e.url("/publish/flood/1/0"))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200, "publish");
}

/// Starts `GET /limits/sleep/{ms}` once the route is warm, and gives it
/// time to reach the plugin.
async fn slow_request(e: &Engine, ms: u64) -> tokio::task::JoinHandle<reqwest::Result<String>> {
    assert_eq!(e.get("/limits/ok").await.status(), 200);
    let request = e.client.get(e.url(&format!("/limits/sleep/{ms}")));
    let slow = tokio::spawn(async move { request.send().await?.error_for_status()?.text().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.is_finished(), "the slow request answered too early");
    slow
}

/// A GraphQL subscription over server-sent events that has received one
/// event; returns the open response and the text read so far.
async fn sse_subscription(e: &Engine) -> (reqwest::Response, String) {
    let mut stream = e
        .client
        .post(e.url("/graphql/stream"))
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({ "query": FLOOD }))
        // Longer than the engine's client timeout would allow a stream.
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("open the event stream");
    assert_eq!(stream.status(), 200);
    let mut text = String::new();
    // Publish until the subscription has registered and sees one.
    for _ in 0..50 {
        publish(e).await;
        if let Ok(chunk) = tokio::time::timeout(Duration::from_millis(200), stream.chunk()).await {
            text.push_str(&String::from_utf8_lossy(
                &chunk.expect("read the stream").expect("the stream is open"),
            ));
            if text.contains("event: next") {
                return (stream, text);
            }
        }
    }
    panic!("the SSE subscription got no event; read: {text:?}");
}

/// Reads `stream` to its end (asserting it ends cleanly, in time); returns all it said.
async fn read_to_end(mut stream: reqwest::Response, mut text: String) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => return text,
            Ok(Err(e)) => panic!("the stream broke instead of ending: {e}; read: {text:?}"),
            Err(_) => panic!("the stream did not end in 10 s; read: {text:?}"),
        }
    }
}

async fn connect(e: &Engine, protocol: &str) -> Socket {
    let mut request = e.ws_url("/graphql/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    socket
}

/// The next frame, within 10 s; `None` when the socket has ended.
async fn next_frame(socket: &mut Socket) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .map(|m| m.expect("a well-formed frame"))
}

fn json_of(m: &Message) -> Option<Value> {
    match m {
        Message::Text(t) => Some(serde_json::from_str(t).expect("JSON")),
        _ => None,
    }
}

/// A WebSocket speaking `protocol` with subscription "1" running and one
/// result received.
async fn ws_subscription(e: &Engine, protocol: &str) -> Socket {
    let mut ws = connect(e, protocol).await;
    let start = match protocol {
        "graphql-transport-ws" => "subscribe",
        _ => "start",
    };
    ws.send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
        .await
        .unwrap();
    let ack = next_frame(&mut ws).await.and_then(|m| json_of(&m));
    assert_eq!(ack.unwrap_or_default()["type"], "connection_ack");
    ws.send(Message::text(
        serde_json::json!({ "type": start, "id": "1", "payload": { "query": FLOOD } }).to_string(),
    ))
    .await
    .unwrap();
    for _ in 0..50 {
        publish(e).await;
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), next_frame(&mut ws)).await {
            let m = json_of(&m.expect("the socket is open")).unwrap_or_default();
            assert!(
                m["type"] == "next" || m["type"] == "data",
                "{protocol}: {m}"
            );
            return ws;
        }
    }
    panic!("{protocol}: the subscription got no result");
}

/// Reads `ws` after SIGTERM: any results still on their way, then
/// `complete` for subscription "1", then a 1001 close frame.
async fn expect_complete_then_going_away(ws: &mut Socket, protocol: &str) {
    let mut seen = Vec::new();
    loop {
        match next_frame(ws).await {
            Some(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] == "complete" {
                    assert_eq!(v["id"], "1", "{protocol}: {v}");
                    break;
                }
                assert!(
                    v["type"] == "next" || v["type"] == "data",
                    "{protocol}: {v}"
                );
                seen.push(v);
            }
            Some(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("{protocol}: expected complete, got {other:?} after {seen:?}"),
        }
    }
    match next_frame(ws).await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Away, "{protocol}: {frame:?}")
        }
        other => panic!("{protocol}: expected a 1001 close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_request_in_flight_at_sigterm_gets_its_answer_and_the_engine_exits_0() {
    let mut e = engine("").await;
    // An open subscription, as any live deployment has: it must not keep
    // the engine from stopping once the request is answered.
    let (stream, _) = sse_subscription(&e).await;
    let slow = slow_request(&e, 1500).await;
    e.terminate();
    let answer = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the request in flight is answered in time")
        .unwrap();
    assert_eq!(answer.expect("a 200 answer"), "slept");
    let status = e.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}; log:\n{}",
        e.log_text()
    );
    drop(stream);
}

#[tokio::test]
async fn new_connections_are_refused_while_a_request_in_flight_finishes() {
    let mut e = engine("").await;
    let (stream, _) = sse_subscription(&e).await;
    let slow = slow_request(&e, 2500).await;
    let addr = e.addr().to_string();
    e.terminate();
    let refused = wait_for(Duration::from_secs(2), || {
        let addr = addr.clone();
        async move { tokio::net::TcpStream::connect(&addr).await.err() }
    })
    .await;
    let refused = refused.expect("a new connection is refused after SIGTERM");
    // Refused once the listener is closed; a connection the kernel had
    // queued in the moment it closed is reset instead. Neither is served.
    assert!(
        matches!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
        ),
        "{refused}"
    );
    assert!(
        !slow.is_finished(),
        "the request in flight should still be running when connections are refused"
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the request in flight is answered in time")
        .unwrap();
    assert_eq!(answer.expect("a 200 answer"), "slept");
    let status = e.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    drop(stream);
}

#[tokio::test]
async fn websocket_subscriptions_get_complete_then_a_going_away_close_on_both_protocols() {
    let mut e = engine("").await;
    let mut current = ws_subscription(&e, "graphql-transport-ws").await;
    let mut legacy = ws_subscription(&e, "graphql-ws").await;
    e.terminate();
    expect_complete_then_going_away(&mut current, "graphql-transport-ws").await;
    expect_complete_then_going_away(&mut legacy, "graphql-ws").await;
    let status = e.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}; log:\n{}",
        e.log_text()
    );
}

#[tokio::test]
async fn an_sse_subscription_ends_with_its_complete_event() {
    let mut e = engine("").await;
    let (stream, text) = sse_subscription(&e).await;
    e.terminate();
    let text = read_to_end(stream, text).await;
    let complete = text.rfind("event: complete");
    assert!(
        complete.is_some_and(|at| text.rfind("event: next").is_some_and(|next| next < at)),
        "the stream should end with a complete event: {text:?}"
    );
    let status = e.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

#[tokio::test]
async fn a_request_outlasting_the_grace_period_is_cut_and_the_engine_still_exits() {
    let mut e = engine("[http]\nshutdown_grace_ms = 500\n").await;
    let slow = slow_request(&e, 8000).await;
    let asked = Instant::now();
    e.terminate();
    let status = e.wait_exit(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?}; log:\n{}",
        e.log_text()
    );
    assert!(
        took < Duration::from_millis(2500),
        "the engine took {took:?} to stop with a 500 ms grace period"
    );
    let cut = e.log_lines_with(&["shutdown grace period", "cutting 1 connection(s)"]);
    assert_eq!(cut.len(), 1, "log:\n{}", e.log_text());
    let answer = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the cut request ends in time")
        .unwrap();
    assert!(answer.is_err(), "the cut request was answered: {answer:?}");
}
