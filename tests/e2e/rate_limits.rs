//! Rate limits: a burst passes, the rest get 429 with `Retry-After` and
//! `RateLimit-*`; budgets are per principal (anonymous callers per IP) and
//! per group of paths; two engines on one Redis share them.

use kiln_e2e::{Engine, TestRedis, Value};

const LIMITS: &str = r#"
[[rate_limits]]
name = "hello"
paths = ["/hello/*"]
per = "principal"
requests = 1
window_s = 60
burst = 3
"#;

/// Statuses of `n` sequential GETs of `path` with an optional key.
async fn burst(e: &Engine, path: &str, key: Option<&str>, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let mut r = e.client.get(e.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        statuses.push(r.send().await.unwrap().status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn a_burst_passes_and_the_rest_get_429_with_headers() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .config(LIMITS)
        .start()
        .await;
    let r = e.client.get(e.url("/hello/a")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-limit"], "3");
    assert_eq!(r.headers()["ratelimit-remaining"], "2");
    assert_eq!(r.headers()["ratelimit-policy"], "1;w=60");
    assert_eq!(burst(&e, "/hello/a", None, 2).await, vec![200, 200]);

    let r = e.client.get(e.url("/hello/a")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'hello' limit")
    );

    // Other paths are not in the group.
    assert_eq!(burst(&e, "/echo", None, 1).await, vec![405]);

    // A principal has its own budget, apart from the anonymous IP's.
    let out = e.cli(&["keys", "create", "--name", "ci", "--roles", "reader"]);
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        burst(&e, "/hello/a", Some(&key), 4).await,
        vec![200, 200, 200, 429]
    );
}

#[tokio::test]
async fn a_concurrent_burst_lets_exactly_the_bucket_through() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .config(LIMITS)
        .start()
        .await;
    let requests = (0..20).map(|i| e.client.get(e.url(&format!("/hello/{i}"))).send());
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((passed, limited), (3, 17), "{statuses:?}");
}

#[tokio::test]
async fn two_engines_on_one_redis_share_a_budget() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let config = format!("[redis]\nurl = {:?}\n{LIMITS}", redis.url());
    let (a, b) = tokio::join!(
        Engine::builder()
            .plugin("hello", "hello-rust", None)
            .config(&config)
            .start(),
        Engine::builder()
            .plugin("hello", "hello-rust", None)
            .config(&config)
            .start()
    );
    // Three between the two of them, whichever engine is asked.
    let mut statuses = burst(&a, "/hello/x", None, 2).await;
    statuses.extend(burst(&b, "/hello/x", None, 2).await);
    statuses.extend(burst(&a, "/hello/x", None, 1).await);
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}
