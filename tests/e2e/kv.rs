use std::time::Duration;

use kiln_e2e::{Engine, TestPostgres, Value, json};

async fn put(e: &Engine, key: &str, value: &str, query: &str) -> u16 {
    let url = e.url(&format!("/kv/items/{key}{query}"));
    e.client
        .put(url)
        .body(value.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get(e: &Engine, key: &str) -> Option<String> {
    let r = e.get(&format!("/kv/items/{key}")).await;
    (r.status() == 200).then_some(())?;
    r.text().await.ok()
}

async fn exercise(e: &Engine) {
    assert_eq!(get(e, "greeting").await, None);
    assert_eq!(put(e, "greeting", "hello", "").await, 204);
    assert_eq!(get(e, "greeting").await.as_deref(), Some("hello"));

    for k in ["user:1", "user:2", "user:3", "users"] {
        put(e, k, "x", "").await;
    }
    let keys: Value = e.get("/kv/keys?prefix=user%3A").await.json().await.unwrap();
    assert_eq!(keys, json!(["user:1", "user:2", "user:3"]));
    let page: Value = e
        .get("/kv/keys?prefix=user%3A&after=user%3A1&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page, json!(["user:2"]));

    let incr = |by: i64| {
        let url = e.url(&format!("/kv/incr/hits?by={by}"));
        let client = e.client.clone();
        async move {
            client
                .post(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(incr(5).await, json!({"value": 5}));
    assert_eq!(incr(-2).await, json!({"value": 3}));
    let r = e
        .client
        .post(e.url("/kv/incr/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not an integer"));

    let cas = |body: Value| {
        let url = e.url("/kv/cas/lock");
        let client = e.client.clone();
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        cas(json!({"expected": null, "value": "a"})).await,
        json!({"swapped": true})
    );
    assert_eq!(
        cas(json!({"expected": null, "value": "b"})).await,
        json!({"swapped": false})
    );
    assert_eq!(
        cas(json!({"expected": "a", "value": "c"})).await,
        json!({"swapped": true})
    );
    assert_eq!(get(e, "lock").await.as_deref(), Some("c"));

    assert_eq!(put(e, "short", "lived", "?ttl_ms=100").await, 204);
    assert_eq!(get(e, "short").await.as_deref(), Some("lived"));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(get(e, "short").await, None);

    let r = e
        .client
        .delete(e.url("/kv/items/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": true}));
    assert_eq!(get(e, "greeting").await, None);

    // Bad input reaches the plugin as a clear error, which it passes on.
    let long = "k".repeat(600);
    assert_eq!(put(e, &long, "v", "").await, 400);
    let r = e
        .client
        .put(e.url("/kv/items/k?ttl_ms=0"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn kv_works_through_a_plugin_on_sqlite() {
    let e = Engine::builder()
        .plugin("kv", "fixture-kv", None)
        .start()
        .await;
    exercise(&e).await;
}

#[tokio::test]
async fn kv_works_through_a_plugin_on_postgres() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let e = Engine::builder()
        .config(&format!("[database]\nurl = {:?}", pg.url))
        .plugin("kv", "fixture-kv", None)
        .start()
        .await;
    exercise(&e).await;
}

#[tokio::test]
async fn a_plugin_cannot_read_another_plugins_keys() {
    let e = Engine::builder()
        .plugin("kv", "fixture-kv", None)
        .plugin("basic", "fixture-basic", None)
        .start()
        .await;
    assert_eq!(put(&e, "shared", "from-kv", "").await, 204);
    assert_eq!(e.get("/basic/kv/shared").await.status(), 404);
    let r = e
        .client
        .put(e.url("/basic/kv/shared"))
        .body("from-basic")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&e, "shared").await.as_deref(), Some("from-kv"));
    assert_eq!(
        e.get("/basic/kv/shared").await.text().await.unwrap(),
        "from-basic"
    );
}

#[tokio::test]
async fn two_engines_on_one_postgres_and_one_redis_share_state() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let Some(redis) = kiln_e2e::TestRedis::start() else {
        return;
    };
    let engine = || {
        Engine::builder()
            .config(&format!(
                "[database]\nurl = {:?}\n[redis]\nurl = {:?}",
                pg.url,
                redis.url()
            ))
            .plugin("kv", "fixture-kv", None)
            .start()
    };
    let (a, b) = tokio::join!(engine(), engine());
    assert_eq!(put(&a, "written-on", "a", "").await, 204);
    assert_eq!(get(&b, "written-on").await.as_deref(), Some("a"));

    // Increments from both engines at once lose nothing.
    let mut calls = Vec::new();
    for e in [&a, &b] {
        for _ in 0..20 {
            let client = e.client.clone();
            let url = e.url("/kv/incr/together");
            calls.push(tokio::spawn(async move {
                client.post(url).send().await.unwrap().status()
            }));
        }
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    let total: Value = a
        .client
        .post(a.url("/kv/incr/together?by=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(total, json!({"value": 40}));

    // A cache entry set through A is read through B; invalidated on A, gone on B.
    let r = a
        .client
        .put(a.url("/kv/cache/price?ttl_ms=60000"))
        .body("42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(b.get("/kv/cache/price").await.text().await.unwrap(), "42");
    a.client
        .delete(a.url("/kv/cache/price"))
        .send()
        .await
        .unwrap();
    assert_eq!(b.get("/kv/cache/price").await.status(), 404);
}
