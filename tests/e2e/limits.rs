use std::time::{Duration, Instant};

use kiln_e2e::{Engine, Value, error_of};

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
    let spins: Vec<_> = (0..4).map(|_| e.spawn_get("/limits/spin")).collect();
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
        // Above the built-in ceiling, so the operator raises it: fuel, not
        // the clock, must be what stops the loop.
        .config("[limits]\ntimeout_ms = 60000")
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nfuel = 50000000"),
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
        // Above the built-in ceiling, so the operator sets it.
        .config("[plugins.limits.limits]\nqueue_timeout_ms = 10000")
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\nmax_concurrency = 1\nqueue_size = 1"),
        )
        .start()
        .await;
    let calls: Vec<_> = (0..3).map(|_| e.spawn_get("/limits/sleep/1500")).collect();
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
    let slow = e.spawn_get("/limits/sleep/3000");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = e.get("/limits/ok").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(slow.await.unwrap().status(), 200);
}

/// Makes `n` concurrent `GET path` calls; their statuses once all are done.
fn concurrently(e: &Engine, path: &str, n: usize) -> tokio::task::JoinHandle<Vec<u16>> {
    let calls: Vec<_> = (0..n).map(|_| e.spawn_get(path)).collect();
    tokio::spawn(async move {
        let mut statuses = Vec::new();
        for c in calls {
            statuses.push(c.await.unwrap().status().as_u16());
        }
        statuses
    })
}

#[tokio::test]
async fn idle_warm_instances_give_way_when_the_engine_runs_out_of_instance_slots() {
    // Three slots in all; `limits` keeps up to three warm instances.
    let e = Engine::builder()
        .runtime("max_instances = 3")
        .config("[limits]\nmax_concurrency = 3\nwarm_instances = 3")
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\ninstances = \"warm\""),
        )
        .plugin("basic", "fixture-basic", None)
        .start()
        .await;
    let statuses = concurrently(&e, "/limits/sleep/400", 3).await.unwrap();
    assert_eq!(statuses, [200, 200, 200]);
    let idle = |p: Option<Value>| p.unwrap()["instances"]["idle"].clone();
    assert_eq!(idle(e.admin_plugin("limits").await), 3);
    // Every slot is held by an idle instance: a call to another plugin
    // makes them go rather than fail.
    assert_eq!(e.get("/basic/status/200").await.status(), 200);
    assert_eq!(idle(e.admin_plugin("limits").await), 0);

    // Slots held by running calls are another matter: 503, retry shortly.
    let running = concurrently(&e, "/limits/sleep/1500", 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = e.get("/basic/status/200").await;
    assert_eq!(r.headers()["retry-after"], "1");
    let (status, code, message) = error_of(r).await;
    assert_eq!((status, code.as_str()), (503, "plugin_busy"), "{message}");
    assert!(message.contains("max_instances = 3"), "{message}");
    assert_eq!(running.await.unwrap(), [200, 200, 200]);
}
