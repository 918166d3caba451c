//! Fan-out latency: N WebSocket subscribers (graphql-transport-ws) follow
//! `priceChanged(sku: "bench")`; each round one `setPrice` mutation publishes
//! once, and every subscriber's receipt is timed against the moment the
//! mutation was sent (one clock, one process). The client runs on one
//! thread, so the engine keeps the other core.
//!
//! Usage: cargo bench -p kiln-e2e --bench fanout -- http://127.0.0.1:PORT [subscribers] [rounds]
//! (bench/graphql.sh starts the engine and runs this.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The price published to warm up; then 0, 1, 2, … per round; STOP ends.
const WARMUP: u32 = 999_999;
const STOP: u32 = 999_998;

struct Shared {
    ready: AtomicUsize,
    /// Receipts per round.
    counts: Vec<AtomicUsize>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let base = args
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:18099".into());
    let subscribers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let ws_url = format!("{}/graphql/ws", base.replacen("http", "ws", 1));
    kiln_e2e::install_tls_provider();
    let http = reqwest::Client::new();
    let gql = |query: String| {
        let http = http.clone();
        let url = format!("{base}/graphql");
        async move {
            let r = http
                .post(url)
                .json(&serde_json::json!({ "query": query }))
                .send()
                .await
                .expect("POST /graphql");
            let body: serde_json::Value = r.json().await.expect("JSON");
            assert!(body.get("errors").is_none(), "{body}");
        }
    };
    gql(r#"mutation { addProduct(input: {sku: "bench", name: "Bench"}) { sku } }"#.into()).await;

    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        counts: (0..rounds).map(|_| AtomicUsize::new(0)).collect(),
    });
    let mut tasks = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let (url, shared) = (ws_url.clone(), shared.clone());
        tasks.push(tokio::spawn(subscriber(url, shared)));
    }

    let warm_start = Instant::now();
    while shared.ready.load(Ordering::Relaxed) < subscribers {
        gql(format!(
            r#"mutation {{ setPrice(sku: "bench", amount: {WARMUP}) {{ amount }} }}"#
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            warm_start.elapsed() < Duration::from_secs(60),
            "only {}/{subscribers} subscribers ready after 60 s",
            shared.ready.load(Ordering::Relaxed)
        );
    }

    let mut sent_at = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let sent = Instant::now();
        sent_at.push(sent);
        gql(format!(
            r#"mutation {{ setPrice(sku: "bench", amount: {round}) {{ amount }} }}"#
        ))
        .await;
        while shared.counts[round].load(Ordering::Relaxed) < subscribers
            && sent.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gql(format!(
        r#"mutation {{ setPrice(sku: "bench", amount: {STOP}) {{ amount }} }}"#
    ))
    .await;

    let mut latencies = Vec::with_capacity(subscribers * rounds);
    for task in tasks {
        let receipts = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for (round, at) in receipts {
            latencies.push(at.duration_since(sent_at[round]).as_secs_f64() * 1000.0);
        }
    }
    let lost = subscribers * rounds - latencies.len();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((p / 100.0) * latencies.len() as f64) as usize % latencies.len()];
    println!(
        "subscribers: {subscribers}, publishes: {rounds}, deliveries: {}, lost: {lost}",
        latencies.len()
    );
    println!(
        "latency from mutation sent to delivery: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(50.0),
        pct(99.0),
        latencies.last().copied().unwrap_or_default()
    );
}

/// One subscriber: subscribes, then records (round, receipt time) until STOP.
async fn subscriber(url: String, shared: Arc<Shared>) -> Vec<(usize, Instant)> {
    let mut request = url.into_client_request().expect("ws url");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .expect("init");
    ws.send(Message::text(
        r#"{"type":"subscribe","id":"1","payload":{"query":"subscription { priceChanged(sku: \"bench\") { amount } }"}}"#,
    ))
    .await
    .expect("subscribe");
    let mut warm = false;
    let mut receipts = Vec::new();
    while let Some(Ok(frame)) = ws.next().await {
        let at = Instant::now();
        let Message::Text(text) = frame else { continue };
        let Some(amount) = amount(&text) else {
            continue;
        };
        match amount {
            WARMUP if !warm => {
                warm = true;
                shared.ready.fetch_add(1, Ordering::Relaxed);
            }
            WARMUP => {}
            STOP => break,
            round => {
                let round = round as usize;
                if let Some(count) = shared.counts.get(round) {
                    count.fetch_add(1, Ordering::Relaxed);
                    receipts.push((round, at));
                }
            }
        }
    }
    receipts
}

/// The `amount` of a `next` message, without a full JSON parse.
fn amount(text: &str) -> Option<u32> {
    let rest = &text[text.find("\"amount\":")? + 9..];
    let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    rest[..end].parse::<f64>().ok().map(|a| a as u32)
}
