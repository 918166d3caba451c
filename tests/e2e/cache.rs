use std::time::Duration;

use kiln_e2e::{Engine, TestRedis, Value, json, wait_for};

async fn cached(e: &Engine, key: &str) -> (u16, String) {
    let r = e.get(&format!("/kv/cache/{key}")).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn cache(e: &Engine, key: &str, value: &str, ttl_ms: u64) -> u16 {
    let url = e.url(&format!("/kv/cache/{key}?ttl_ms={ttl_ms}"));
    e.client
        .put(url)
        .body(value.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_in_process_cache_stores_expires_and_deletes() {
    let e = Engine::builder()
        .config("[cache]\nmax_value = \"1KiB\"")
        .plugin("kv", "fixture-kv", None)
        .start()
        .await;
    let health: Value = e.get("/_kiln/v1/health").await.json().await.unwrap();
    assert_eq!(health["cache"], json!({"kind": "memory", "status": "ok"}));
    assert_eq!(cache(&e, "a", "1", 60_000).await, 204);
    assert_eq!(cached(&e, "a").await, (200, "1".into()));
    assert_eq!(cache(&e, "b", "2", 50).await, 204);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cached(&e, "b").await.0, 404);
    let r = e.client.delete(e.url("/kv/cache/a")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": true}));
    assert_eq!(cached(&e, "a").await.0, 404);
    // A value over cache.max_value is refused with the reason.
    let r = e
        .client
        .put(e.url("/kv/cache/big?ttl_ms=1000"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cache limit"));
}

fn with_redis(redis: &TestRedis) -> kiln_e2e::EngineBuilder {
    Engine::builder()
        .config(&format!(
            "[redis]\nurl = {:?}\nresponse_timeout_ms = 500\nconnect_timeout_ms = 500",
            redis.url()
        ))
        .plugin("kv", "fixture-kv", None)
}

#[tokio::test]
async fn two_engines_share_the_cache_in_redis() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let (a, b) = tokio::join!(with_redis(&redis).start(), with_redis(&redis).start());
    let health: Value = a.get("/_kiln/v1/health").await.json().await.unwrap();
    assert_eq!(health["cache"], json!({"kind": "redis", "status": "ok"}));

    assert_eq!(cache(&a, "price", "42", 60_000).await, 204);
    assert_eq!(cached(&b, "price").await, (200, "42".into()));
    // Invalidated on A, gone on B.
    a.client
        .delete(a.url("/kv/cache/price"))
        .send()
        .await
        .unwrap();
    assert_eq!(cached(&b, "price").await.0, 404);
}

#[tokio::test]
async fn when_redis_goes_away_cache_calls_are_503_and_the_engine_recovers() {
    let Some(mut redis) = TestRedis::start() else {
        return;
    };
    let e = with_redis(&redis).start().await;
    assert_eq!(cache(&e, "k", "v", 60_000).await, 204);

    redis.stop();
    let (status, body) = cached(&e, "k").await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cache is unavailable"),
        "{body}"
    );
    let health: Value = e.get("/_kiln/v1/health").await.json().await.unwrap();
    assert_eq!(
        health["status"], "ok",
        "the engine still serves without its cache"
    );
    assert_eq!(health["cache"]["status"], "unavailable");
    // Routes that do not need Redis are unaffected.
    assert_eq!(e.get("/kv/keys").await.status(), 200);

    redis.restart();
    let back = wait_for(Duration::from_secs(15), || async {
        (cache(&e, "k", "again", 60_000).await == 204).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "the engine did not reconnect to Redis; log:\n{}",
        e.log_text()
    );
    assert_eq!(cached(&e, "k").await, (200, "again".into()));
}
