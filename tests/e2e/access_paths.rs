//! One request, one decision: every spelling of a path meets the access rule
//! and the rate-limit group written for its canonical form, HEAD is checked
//! as the GET handler it runs, and paths with no safe canonical form are 400.
//! Requests go over a raw socket so that no client normalises them first.

use kiln_e2e::Engine;

const CONFIG: &str = r#"
[access]
default = "public"

[[access.rules]]
path = "/basic/files/private*"
allow = "roles(admin)"

[[access.rules]]
path = "/basic/items/*"
methods = ["GET"]
allow = "roles(admin)"
"#;

const LIMITS: &str = r#"
[[rate_limits]]
name = "limited"
paths = ["/basic/files/limited*"]
per = "ip"
requests = 3
window_s = 3600
"#;

async fn engine() -> (Engine, String) {
    let e = Engine::builder()
        .plugin("basic", "fixture-basic", None)
        .access(CONFIG)
        .config(LIMITS)
        .start()
        .await;
    let out = e.cli(&["keys", "create", "--name", "boss", "--roles", "admin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (e, key)
}

#[tokio::test]
async fn every_spelling_of_a_guarded_path_meets_its_rule() {
    let (e, key) = engine().await;
    let bearer = format!("Bearer {key}");
    let admin = [("authorization", bearer.as_str())];
    // (spelling, what the plugin sees as {*path}); anonymous → 401, admin → 200.
    let guarded: &[(&str, &str)] = &[
        ("/basic/files/private/a.txt", "private/a.txt"),
        ("/basic/files/%70rivate/a.txt", "private/a.txt"),
        ("/basic/files/%70%72%69%76%61%74%65/a.txt", "private/a.txt"),
        ("/%62asic/files/private/a.txt", "private/a.txt"),
        ("//basic/files/private/a.txt", "private/a.txt"),
        ("/basic//files/private/a.txt", "private/a.txt"),
        ("/basic/files//private/a.txt", "private/a.txt"),
        ("/basic/files/./private/a.txt", "private/a.txt"),
        ("/basic/files/%2E/private/a.txt", "private/a.txt"),
        ("/basic/files/x/../private/a.txt", "private/a.txt"),
        ("/basic/files/x/%2e%2e/private/a.txt", "private/a.txt"),
        ("/basic/files/private/a.txt/", "private/a.txt"),
        ("/basic/files/private", "private"),
        ("/basic/files/private/", "private"),
        ("/basic/files/private/.", "private"),
        ("/basic/files/private?x=1", "private"),
    ];
    for (spelling, seen) in guarded {
        let (status, body) = e.raw_request("GET", spelling, &[]).await;
        assert_eq!(status, 401, "anonymous GET {spelling}: {body}");
        let (status, body) = e.raw_request("GET", spelling, &admin).await;
        assert_eq!(
            (status, body.as_str()),
            (200, *seen),
            "admin GET {spelling}"
        );
        // HEAD runs the same GET handler, so the same rule holds.
        let (status, _) = e.raw_request("HEAD", spelling, &[]).await;
        assert_eq!(status, 401, "anonymous HEAD {spelling}");
    }

    // What the rule does not name stays open, however it is spelled.
    for spelling in ["/basic/files/public.txt", "//basic/files/%70ublic.txt/"] {
        let (status, body) = e.raw_request("GET", spelling, &[]).await;
        assert_eq!((status, body.as_str()), (200, "public.txt"), "{spelling}");
    }

    // No canonical form: refused before routing, for everyone.
    for spelling in [
        "/basic/files/%zz",
        "/basic/files/private%",
        "/basic/files%2Fprivate/a.txt",
        "/basic/files/private%2fa.txt",
        "/basic/files/a%00.txt",
        "/basic/files/a%0A.txt",
        "/../basic/files/private",
        "/basic/../../files/private",
    ] {
        for headers in [&[][..], &admin[..]] {
            let (status, body) = e.raw_request("GET", spelling, headers).await;
            assert_eq!(status, 400, "{spelling}: {body}");
            assert!(body.contains("\"bad_path\""), "{spelling}: {body}");
        }
    }
}

#[tokio::test]
async fn head_is_checked_as_the_get_it_runs() {
    let (e, key) = engine().await;
    let bearer = format!("Bearer {key}");
    let admin = [("authorization", bearer.as_str())];
    // `methods = ["GET"]` guards HEAD too: it is the same handler.
    for method in ["GET", "HEAD"] {
        let (status, _) = e.raw_request(method, "/basic/items/7", &[]).await;
        assert_eq!(status, 401, "anonymous {method}");
        let (status, _) = e.raw_request(method, "/basic/items/7", &admin).await;
        assert_eq!(status, 200, "admin {method}");
    }
    // Methods are case-sensitive (RFC 9110): `get` is not GET and reaches
    // no handler at all.
    let (status, _) = e.raw_request("get", "/basic/items/7", &[]).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn every_spelling_spends_from_the_same_rate_limit_bucket() {
    let (e, _) = engine().await;
    let spellings = [
        "/basic/files/limited",
        "//basic/files/limited",
        "/basic/files/%6Cimited/",
        "/basic/files/x/../limited",
    ];
    let mut statuses = Vec::new();
    for spelling in spellings {
        statuses.push(e.raw_request("GET", spelling, &[]).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}
