use std::time::{Duration, Instant};

use kiln_e2e::{Engine, error_of};

#[tokio::test]
async fn a_spinning_plugin_is_stopped_at_its_timeout_while_others_keep_serving() {
    let e = Engine::builder()
        .runtime("cpu_limit = \"epoch\"")
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\ntimeout_ms = 3000"),
        )
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    let started = Instant::now();
    // More spinning guests than the machine has cores.
    let spins: Vec<_> = (0..4)
        .map(|_| {
            let client = e.client.clone();
            let url = e.url("/limits/spin");
            tokio::spawn(async move { client.get(url).send().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let r = e.get("/hello/meanwhile").await;
        assert_eq!(r.status(), 200);
    }
    assert!(
        spins.iter().all(|s| !s.is_finished()),
        "the other requests should have been answered while the spinning calls still ran"
    );
    for s in spins {
        let (status, code, message) = error_of(s.await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (504, "plugin_timeout"),
            "{message}"
        );
        assert!(
            message.contains("fixture-limits") && message.contains("3000 ms"),
            "{message}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3000),
        "stopped early: {elapsed:?}"
    );
    // Generous: the point is that it stops, not how fast the machine is.
    assert!(
        elapsed < Duration::from_secs(10),
        "not stopped: {elapsed:?}"
    );
    assert_eq!(e.get("/limits/ok").await.status(), 200);
}

#[tokio::test]
async fn fuel_stops_a_busy_loop() {
    let e = Engine::builder()
        .runtime("cpu_limit = \"fuel\"")
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nfuel = 50000000\ntimeout_ms = 60000"),
        )
        .start()
        .await;
    let (status, code, message) = error_of(e.get("/limits/spin").await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "plugin_cpu_limit"),
        "{message}"
    );
    assert!(message.contains("50000000 instructions"), "{message}");
    assert_eq!(e.get("/limits/ok").await.status(), 200);
}

#[tokio::test]
async fn growing_past_the_memory_cap_is_a_clean_error() {
    let e = Engine::builder()
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nmemory = \"16MiB\""),
        )
        .start()
        .await;
    let (status, code, message) = error_of(e.get("/limits/grow").await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "plugin_memory_limit"),
        "{message}"
    );
    assert!(message.contains("16777216 bytes"), "{message}");
    assert_eq!(e.get("/limits/ok").await.status(), 200);
}

#[tokio::test]
async fn a_panic_is_a_500_named_in_the_log_and_the_next_call_works() {
    let e = Engine::builder()
        .plugin("limits", "fixture-limits", None)
        .start()
        .await;
    let r = e.get("/limits/panic").await;
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "plugin_crashed"),
        "{message}"
    );
    assert!(message.contains("fixture-limits"), "{message}");
    let logged = kiln_e2e::wait_for(Duration::from_secs(5), || async {
        let lines = e.log_lines_with(&["plugin call failed", "fixture-limits", &request_id]);
        lines.into_iter().next()
    })
    .await
    .unwrap_or_else(|| panic!("no failure log line; log:\n{}", e.log_text()));
    assert!(logged.contains("fixture panic on purpose"), "{logged}");
    let r = e.get("/limits/ok").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let e = Engine::builder()
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nmax_concurrency = 1\nqueue_size = 1\nqueue_timeout_ms = 10000"),
        )
        .start()
        .await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let client = e.client.clone();
            let url = e.url("/limits/sleep/1500");
            tokio::spawn(async move { client.get(url).send().await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 503 {
            retry_after.push(r.headers()["retry-after"].to_str().unwrap().to_string());
            let (_, code, _) = error_of(r).await;
            assert_eq!(code, "plugin_busy");
        }
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503]);
    assert_eq!(retry_after, ["1"]);
}

#[tokio::test]
async fn waiting_longer_than_the_queue_timeout_is_503() {
    let e = Engine::builder()
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nmax_concurrency = 1\nqueue_size = 8\nqueue_timeout_ms = 200"),
        )
        .start()
        .await;
    let slow = {
        let client = e.client.clone();
        let url = e.url("/limits/sleep/3000");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = e.get("/limits/ok").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(slow.await.unwrap().status(), 200);
}
