//! What every request and response gets regardless of the plugin: security
//! headers, CORS only when configured, a header size limit, a request time
//! limit, and a Content-Security-Policy on the GraphiQL page.

use kiln_e2e::{Engine, Value};

#[tokio::test]
async fn responses_carry_security_headers_and_no_cors_by_default() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    let r = e.client.get(e.url("/hello/ada")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS without http.hsts"
    );
    assert!(h.get("x-request-id").is_some());

    // No origin is allowed until the operator lists one.
    let r = e
        .client
        .request(reqwest::Method::OPTIONS, e.url("/hello/ada"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Errors from the host get them too.
    let r = e.client.get(e.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // GraphiQL: a CSP that allows the pinned CDN and nothing else.
    let r = e
        .client
        .get(e.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .config("[http]\nmax_header_bytes = \"2KiB\"")
        .start()
        .await;
    let r = e
        .client
        .get(e.url("/hello/ada"))
        .header("x-padding", "a".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    let r = e
        .client
        .get(e.url("/hello/ada"))
        .header("x-padding", "a".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn configured_cors_answers_preflights_for_listed_origins_only_and_hsts_when_asked() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .config(
            "[http]\nhsts = true\n[http.cors]\nallowed_origins = [\"https://app.example\"]\nmax_age_s = 60",
        )
        .start()
        .await;
    let preflight = |origin: &'static str| {
        e.client
            .request(reqwest::Method::OPTIONS, e.url("/hello/ada"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(h["access-control-max-age"], "60");
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let r = e
        .client
        .get(e.url("/hello/ada"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn a_request_that_outlives_the_request_timeout_gets_504() {
    let e = Engine::builder()
        .plugin(
            "limits",
            "fixture-limits",
            Some("[limits]\ntimeout_ms = 10000"),
        )
        .config("[http]\nrequest_timeout_ms = 300")
        .start()
        .await;
    let r = e
        .client
        .get(e.url("/limits/sleep/3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(body["error"]["request_id"].is_string());
    let r = e.client.get(e.url("/limits/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_http11_request_without_exactly_one_host_is_400() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .start()
        .await;
    let (status, body) = e
        .raw_exchange("GET /hello/ada HTTP/1.1\r\nconnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("exactly one Host"), "{body}");
    let (status, _) = e
        .raw_exchange("GET /hello/ada HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 400);
    // HTTP/1.0 has no Host requirement; with one Host, 1.1 is served.
    let (status, _) = e.raw_exchange("GET /hello/ada HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    let (status, _) = e.raw_request("GET", "/hello/ada", &[]).await;
    assert_eq!(status, 200);
}
