use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_e2e::{Engine, fixture, wait_for};

#[tokio::test]
async fn replacing_a_plugin_under_load_fails_no_request() {
    let e = Engine::builder()
        .plugin("app", "fixture-reload-v1", None)
        .start()
        .await;
    assert_eq!(e.get("/version").await.text().await.unwrap(), "v1");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let client = e.client.clone();
            let url = e.url("/version");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = client.get(&url).send().await;
                    let outcome = match result {
                        Ok(r) if r.status() == 200 => Ok(r.text().await.unwrap_or_default()),
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(err) => Err(err.to_string()),
                    };
                    seen.push((Instant::now(), outcome));
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let replaced = Instant::now();
    e.install("app", &fixture("fixture-reload-v2"));
    let switched = wait_for(Duration::from_secs(10), || async {
        let body = e.get("/version").await.text().await.ok()?;
        (body == "v2").then(Instant::now)
    })
    .await
    .expect("v2 never answered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut failures = Vec::new();
    let mut v1_after_switch = 0;
    for c in clients {
        for (at, outcome) in c.await.unwrap() {
            total += 1;
            match outcome {
                Ok(body) if body == "v1" && at > switched + Duration::from_millis(100) => {
                    v1_after_switch += 1
                }
                Ok(_) => {}
                Err(err) => failures.push(err),
            }
        }
    }
    assert!(total > 50, "the client loops made only {total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        v1_after_switch, 0,
        "the old version answered after the swap"
    );
    let took = switched - replaced;
    assert!(
        took <= Duration::from_secs(2),
        "the new version answered only after {took:?}"
    );
}

#[tokio::test]
async fn a_corrupt_file_keeps_the_old_version_and_is_reported() {
    let e = Engine::builder()
        .plugin("app", "fixture-reload-v1", None)
        .start()
        .await;
    let loaded_at = e.admin_plugin("app").await.unwrap()["loaded_at"].clone();
    // Load times are in seconds: let one pass so a reset would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    e.install_bytes("app", b"\0asm\x0d\0\x01\0 this is not a component");
    let status = wait_for(Duration::from_secs(10), || async {
        let p = e.admin_plugin("app").await?;
        p["last_error"].is_string().then_some(p)
    })
    .await
    .expect("the admin API never showed the error");
    assert_eq!(status["state"], "serving_previous");
    assert_eq!(
        status["loaded_at"], loaded_at,
        "the serving version's load time"
    );
    assert_eq!(status["name"], "fixture-reload-v1");
    assert!(status["attempted_hash"].is_string());
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("compiling failed"),
        "{status}"
    );
    assert_eq!(e.get("/version").await.text().await.unwrap(), "v1");
    assert!(
        !e.log_lines_with(&["plugin not loaded", "app.wasm"])
            .is_empty(),
        "{}",
        e.log_text()
    );

    // A core module (not a component) is refused with a hint.
    e.install_bytes("app", b"\0asm\x01\0\0\0");
    let err = wait_for(Duration::from_secs(10), || async {
        let p = e.admin_plugin("app").await?;
        let err = p["last_error"].as_str()?.to_string();
        err.contains("core WebAssembly module").then_some(err)
    })
    .await;
    assert!(err.is_some());
    assert_eq!(e.get("/version").await.text().await.unwrap(), "v1");

    // Fixing the file brings it back to active.
    e.install("app", &fixture("fixture-reload-v2"));
    let active = wait_for(Duration::from_secs(10), || async {
        let p = e.admin_plugin("app").await?;
        (p["state"] == "active").then_some(p)
    })
    .await
    .expect("never active again");
    assert!(active["last_error"].is_null());
    assert_eq!(e.get("/version").await.text().await.unwrap(), "v2");
}

#[tokio::test]
async fn removing_a_file_unmounts_its_routes() {
    let e = Engine::builder()
        .plugin("app", "fixture-reload-v1", None)
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    assert_eq!(e.get("/version").await.status(), 200);
    std::fs::remove_file(e.plugins_dir().join("app.wasm")).unwrap();
    let gone = wait_for(Duration::from_secs(10), || async {
        (e.get("/version").await.status() == 404).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "route still served after the file was removed"
    );
    assert!(e.admin_plugin("app").await.is_none());
    assert_eq!(e.get("/hello/x").await.status(), 200);
}

#[tokio::test]
async fn a_new_file_is_served_without_restart() {
    let e = Engine::builder().start().await;
    assert_eq!(e.get("/hello/x").await.status(), 404);
    e.install("hello", &fixture("hello-rust"));
    let served = wait_for(Duration::from_secs(5), || async {
        (e.get("/hello/x").await.status() == 200).then_some(())
    })
    .await;
    assert!(served.is_some());
}

#[tokio::test]
async fn a_restart_maps_compiled_components_from_the_cache() {
    let mut e = Engine::builder()
        .own_cache()
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    let first = e.admin_plugin("hello").await.unwrap();
    assert_eq!(first["compile_cache"], "compiled");
    let cached: Vec<_> = std::fs::read_dir(e.dir.path().join("data/cache"))
        .unwrap()
        .filter_map(|f| f.ok())
        .filter(|f| f.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1);
    assert!(
        cached[0]
            .file_name()
            .to_string_lossy()
            .starts_with(first["hash"].as_str().unwrap())
    );

    e.restart();
    let second = e.admin_plugin("hello").await.unwrap();
    assert_eq!(second["compile_cache"], "hit");
    assert_eq!(e.get("/hello/again").await.status(), 200);
}

#[tokio::test]
async fn a_call_in_flight_finishes_on_the_version_it_started_on() {
    let e = Engine::builder()
        .plugin("app", "fixture-reload-v1", None)
        .start()
        .await;
    // The swap (compiling v2 beside the rest of the suite) must end while
    // this call still runs: 1.5 s was once too short on a busy machine, and
    // 8 s stays under the default 10 s call timeout.
    let slow = {
        let client = e.client.clone();
        let url = e.url("/version/slow/8000");
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.install("app", &fixture("fixture-reload-v2"));
    wait_for(Duration::from_secs(10), || async {
        (e.get("/version").await.text().await.ok()? == "v2").then_some(())
    })
    .await
    .expect("v2 never answered");
    assert!(
        !slow.is_finished(),
        "the slow call should still be running after the swap"
    );
    assert_eq!(slow.await.unwrap(), "v1");
}
