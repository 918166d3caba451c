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

const OUTAGE_BEGAN: &str = "rate limit store outage began";
const RECOVERED: &str = "rate limit store recovered";

/// An engine on a private Redis with one group of a budget of two on
/// `/hello/*`, per IP, doing `on_redis_error` when Redis is gone; one
/// request is spent while Redis is up, then Redis is stopped.
async fn with_redis_stopped(on_redis_error: &str) -> Option<(Engine, TestRedis)> {
    let mut redis = TestRedis::start()?;
    let config = format!(
        "[redis]\nurl = {:?}\nconnect_timeout_ms = 200\nresponse_timeout_ms = 200\n\
         [[rate_limits]]\nname = \"small\"\npaths = [\"/hello/*\"]\nper = \"ip\"\n\
         requests = 1\nwindow_s = 60\nburst = 2\non_redis_error = {on_redis_error:?}\n",
        redis.url()
    );
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .config(&config)
        .start()
        .await;
    let r = e.get("/hello/up").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-remaining"], "1", "spent in Redis");
    redis.stop();
    Some((e, redis))
}

/// Waits for the log to say Redis answers again, asking `/hello/*` meanwhile
/// (the probe rides on requests); at most 15 s.
async fn recovered(e: &Engine, redis: &mut TestRedis) {
    redis.restart();
    let seen = kiln_e2e::wait_for(std::time::Duration::from_secs(15), || async {
        let _ = e.get("/hello/probe").await;
        (!e.log_lines_with(&[RECOVERED]).is_empty()).then_some(())
    })
    .await;
    assert!(seen.is_some(), "no recovery logged; log:\n{}", e.log_text());
    assert_eq!(e.log_lines_with(&[RECOVERED]).len(), 1, "{}", e.log_text());
    assert_eq!(
        e.log_lines_with(&[OUTAGE_BEGAN]).len(),
        1,
        "{}",
        e.log_text()
    );
}

#[tokio::test]
async fn with_redis_down_a_local_group_keeps_its_budget_in_process() {
    let Some((e, mut redis)) = with_redis_stopped("local").await else {
        return;
    };
    // A fresh in-process bucket of two, then refusals: the limit holds.
    assert_eq!(
        burst(&e, "/hello/a", None, 4).await,
        vec![200, 200, 429, 429]
    );
    assert_eq!(
        e.log_lines_with(&[OUTAGE_BEGAN]).len(),
        1,
        "{}",
        e.log_text()
    );
    recovered(&e, &mut redis).await;
}

#[tokio::test]
async fn with_redis_down_a_deny_group_refuses_with_503_naming_it() {
    let Some((e, mut redis)) = with_redis_stopped("deny").await else {
        return;
    };
    for _ in 0..3 {
        let r = e.get("/hello/a").await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_unavailable", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'small'"),
            "{body}"
        );
    }
    // Paths outside the group are not affected.
    assert_eq!(burst(&e, "/echo", None, 1).await, vec![405]);
    assert_eq!(
        e.log_lines_with(&[OUTAGE_BEGAN]).len(),
        1,
        "{}",
        e.log_text()
    );
    recovered(&e, &mut redis).await;
    // Back on Redis, where one of the two tokens is left at most.
    assert_ne!(e.get("/hello/a").await.status(), 503);
}

#[tokio::test]
async fn with_redis_down_an_allow_group_lets_requests_pass() {
    let Some((e, mut redis)) = with_redis_stopped("allow").await else {
        return;
    };
    assert_eq!(burst(&e, "/hello/a", None, 5).await, vec![200; 5]);
    assert_eq!(
        e.log_lines_with(&[OUTAGE_BEGAN]).len(),
        1,
        "{}",
        e.log_text()
    );
    recovered(&e, &mut redis).await;
}
