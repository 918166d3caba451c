//! Identity and access end to end: API keys and JWTs (shared secret, public
//! key, JWKS) on routes, GraphQL fields and MCP tools; every refusal with
//! its status, its JSON shape and its reason; and the caller reaching the
//! plugin through its call context and `kiln:plugin/identity`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use kiln_e2e::{ADMIN_TOKEN, Engine, Value};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://issuer.test";

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/src/identity/testdata")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for a token valid now, for `sub` with `roles`.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "sub": sub, "roles": roles, "iss": ISSUER, "aud": "kiln",
        "exp": now() + 600, "nbf": now() - 5, "team": "blue",
    })
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

const ACCESS: &str = r#"
[access]
default = "authenticated"
[[access.rules]]
path = "/open/*"
allow = "public"
[[access.rules]]
path = "/docs"
methods = ["POST"]
allow = "roles(editor)"
"#;

async fn engine_with(identity: &str) -> Engine {
    Engine::builder()
        .plugin("identity", "fixture-identity", None)
        .access(ACCESS)
        .config(identity)
        .start()
        .await
}

/// A key made with the CLI on the engine's own database.
fn create_key(e: &Engine, name: &str, roles: &str) -> String {
    let out = e.cli(&["keys", "create", "--name", name, "--roles", roles]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn get(
    e: &Engine,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = e.client.get(e.url(path));
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

/// The host's one error shape, with the code and a message containing `needle`.
fn assert_error(body: &Value, code: &str, needle: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
}

#[tokio::test]
async fn routes_follow_the_access_rules_with_api_keys() {
    let e = engine_with("").await;
    let reader = create_key(&e, "reader", "reader");
    let editor = create_key(&e, "editor", "editor");

    // Nothing is open unless a rule opens it.
    let (status, body, headers) = get(&e, "/whoami", None).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", "GET /whoami needs authentication");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, body, _) = get(&e, "/open/whoami", None).await;
    assert_eq!((status, &body["caller"]), (200, &Value::Null));

    // The plugin sees the caller the host authenticated.
    let (status, body, _) = get(&e, "/whoami", Some(&reader)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"]["subject"], "reader");
    assert_eq!(body["caller"]["roles"], json!(["reader"]));
    assert_eq!(body["caller"]["kind"], "api_key");
    // X-Api-Key works the same.
    let r = e
        .client
        .get(e.url("/whoami"))
        .header("x-api-key", &editor)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["caller"]["subject"],
        "editor"
    );

    // Roles: 403 in the same shape; the right role passes.
    let post = |key: &str| {
        e.client
            .post(e.url("/docs"))
            .bearer_auth(key.to_string())
            .send()
    };
    let r = post(&reader).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_error(
        &r.json().await.unwrap(),
        "forbidden",
        "POST /docs needs one of the roles [editor]",
    );
    assert_eq!(post(&editor).await.unwrap().status(), 200);
    // A rule on POST leaves GET to the default.
    assert_eq!(get(&e, "/docs", Some(&reader)).await.0, 200);

    // Credentials that do not check out are refused, even on open routes.
    for (bearer, reason) in [
        ("kk_nope", "malformed"),
        (
            "kk_0000abcd_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "unknown API key",
        ),
        ("not-a-jwt", "no JWT issuer is configured"),
    ] {
        let (status, body, headers) = get(&e, "/open/whoami", Some(bearer)).await;
        assert_eq!(status, 401, "{bearer}: {body}");
        assert_error(&body, "unauthorized", reason);
        assert_eq!(
            headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    let r = e
        .client
        .get(e.url("/whoami"))
        .header("authorization", format!("Basic {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "unauthorized", "Bearer scheme");

    // Revoked through the admin API: refused at once.
    let r = e
        .client
        .delete(e.url("/_kiln/v1/admin/keys/reader"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body, _) = get(&e, "/whoami", Some(&reader)).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", "revoked");
}

#[tokio::test]
async fn the_admin_api_creates_lists_and_revokes_keys() {
    let e = engine_with("").await;
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN_TOKEN).send();
    let r = admin(
        e.client
            .post(e.url("/_kiln/v1/admin/keys"))
            .json(&json!({ "name": "ci", "roles": ["reader"] })),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(created["key_id"].as_str().unwrap()),
        "{created}"
    );
    assert_eq!(created["roles"], json!(["reader"]));
    assert_eq!(get(&e, "/whoami", Some(&key)).await.0, 200);

    let r = admin(e.client.get(e.url("/_kiln/v1/admin/keys")))
        .await
        .unwrap();
    let listed: Value = r.json().await.unwrap();
    let text = listed.to_string();
    assert!(text.contains("\"ci\"") && !text.contains(&key), "{listed}");
    assert!(!text.contains("hash"), "{listed}");

    let r = admin(
        e.client
            .post(e.url("/_kiln/v1/admin/keys"))
            .json(&json!({ "name": "bad name", "roles": [] })),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = admin(
        e.client
            .post(e.url("/_kiln/v1/admin/keys"))
            .json(&json!({ "roles": [] })),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = admin(e.client.delete(e.url("/_kiln/v1/admin/keys/nobody")))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A key without the admin role cannot manage keys.
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn jwts_are_checked_claim_by_claim() {
    let e = engine_with(&format!(
        "[identity.jwt]\nsecret = {SECRET:?}\nissuer = {ISSUER:?}\naudience = \"kiln\"\nleeway_s = 30\n"
    ))
    .await;
    let token = hs256(&claims("ada", &["editor"]));
    let (status, body, _) = get(&e, "/whoami", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"]["subject"], "ada");
    assert_eq!(body["caller"]["kind"], "jwt");
    assert_eq!(body["caller"]["claims"]["team"], "blue");

    // Within the leeway is fine; beyond it is not.
    let mut slightly_expired = claims("ada", &[]);
    slightly_expired["exp"] = json!(now() - 10);
    assert_eq!(
        get(&e, "/whoami", Some(&hs256(&slightly_expired))).await.0,
        200
    );

    let with = |key: &str, value: Value| {
        let mut c = claims("ada", &["editor"]);
        c[key] = value;
        hs256(&c)
    };
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims("ada", &["admin"]),
        &EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!"),
    )
    .unwrap();
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(claims("ada", &["admin"]))
    );
    let mut no_sub = claims("ada", &[]);
    no_sub.as_object_mut().unwrap().remove("sub");
    for (token, reason) in [
        (with("exp", json!(now() - 120)), "expired"),
        (with("nbf", json!(now() + 120)), "not valid yet"),
        (with("iss", json!("https://evil.test")), "another issuer"),
        (with("aud", json!("someone-else")), "another audience"),
        (other_secret, "signature does not verify"),
        (alg_none, "algorithm is not accepted"),
        (hs256(&no_sub), "lacks a required claim"),
        ("a.b.c".to_string(), "malformed"),
    ] {
        let (status, body, _) = get(&e, "/whoami", Some(&token)).await;
        assert_eq!(status, 401, "{reason}: {body}");
        assert_error(&body, "unauthorized", reason);
    }

    // A JWT with the admin role opens the admin API; one without gets 403.
    let admin_jwt = hs256(&claims("root", &["admin"]));
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/plugins"))
        .bearer_auth(&admin_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/plugins"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_error(
        &r.json().await.unwrap(),
        "forbidden",
        "lacks the admin role",
    );
}

#[tokio::test]
async fn a_public_key_issuer_refuses_algorithm_confusion() {
    let e = engine_with(&format!(
        "[identity.jwt]\npublic_key_file = {:?}\nissuer = {ISSUER:?}\naudience = \"kiln\"\n",
        testdata("rsa.pub")
    ))
    .await;
    let private = std::fs::read(testdata("rsa.key")).unwrap();
    let public = std::fs::read(testdata("rsa.pub")).unwrap();
    let rs256 = encode(
        &Header::new(Algorithm::RS256),
        &claims("ada", &[]),
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let (status, body, _) = get(&e, "/whoami", Some(&rs256)).await;
    assert_eq!((status, &body["caller"]["subject"]), (200, &json!("ada")));
    // HS256 "signed" with the public key, which anyone has.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("mallory", &["admin"]),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    let (status, body, _) = get(&e, "/whoami", Some(&confused)).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", "algorithm is not accepted");
}

/// A JWKS endpoint on loopback whose key set the test can change, counting
/// how often the engine fetches it.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

/// The JWK of an Ed25519 public key PEM: its last 32 bytes are the key.
fn ed25519_jwk(pem_file: &str, kid: &str) -> Value {
    let pem = std::fs::read_to_string(testdata(pem_file)).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let raw = &der[der.len() - 32..];
    json!({
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid,
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
    })
}

async fn serve_jwks(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let keys = k.lock().unwrap().clone();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Jwks { url, keys, fetches }
}

fn eddsa(pem_file: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_string());
    let pem = std::fs::read(testdata(pem_file)).unwrap();
    encode(&header, claims, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap()
}

#[tokio::test]
async fn jwks_keys_are_cached_and_refetched_for_an_unknown_kid() {
    let jwks = serve_jwks(vec![ed25519_jwk("ed.pub", "one")]).await;
    let e = engine_with(&format!(
        "[identity.jwt]\njwks_url = {:?}\nissuer = {ISSUER:?}\naudience = \"kiln\"\njwks_min_refresh_ms = 300\n",
        jwks.url
    ))
    .await;
    let first = eddsa("ed.key", "one", &claims("ada", &[]));
    for _ in 0..3 {
        let (status, body, _) = get(&e, "/whoami", Some(&first)).await;
        assert_eq!(
            (status, &body["caller"]["subject"]),
            (200, &json!("ada")),
            "{body}"
        );
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // A key the issuer has not published yet: refused, and a burst of such
    // tokens does not turn into a burst of fetches.
    let second = eddsa("ed2.key", "two", &claims("bob", &[]));
    for _ in 0..5 {
        let (status, body, _) = get(&e, "/whoami", Some(&second)).await;
        assert_eq!(status, 401);
        assert_error(&body, "unauthorized", "kid");
    }
    assert!(
        jwks.fetches.load(Ordering::SeqCst) <= 2,
        "refetches are rate limited"
    );

    // The issuer rotates: the unknown kid makes the engine fetch again.
    jwks.keys
        .lock()
        .unwrap()
        .push(ed25519_jwk("ed2.pub", "two"));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (status, body, _) = get(&e, "/whoami", Some(&second)).await;
    assert_eq!(
        (status, &body["caller"]["subject"]),
        (200, &json!("bob")),
        "{body}"
    );

    // A token signed by key two but naming key one does not verify.
    let lying = eddsa("ed2.key", "one", &claims("mallory", &[]));
    let (status, body, _) = get(&e, "/whoami", Some(&lying)).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", "signature");
}

#[tokio::test]
async fn graphql_fields_follow_auth_directives_and_rules() {
    let e = Engine::builder()
        .plugin("identity", "fixture-identity", None)
        .access("[access]\ndefault = \"authenticated\"\n[[access.rules]]\nfield = \"Query.me\"\nallow = \"public\"\n")
        .start()
        .await;
    let reader = create_key(&e, "reader", "reader");
    let admin = create_key(&e, "boss", "admin");
    let query = |key: Option<String>, q: &'static str| {
        let mut r = e
            .client
            .post(e.url("/graphql"))
            .json(&json!({ "query": q }));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    // Public by rule: anonymous gets null, a caller sees itself (from the
    // context and from the identity import alike).
    let r = query(None, "{ me { subject } }").await;
    assert_eq!(r["data"]["me"], Value::Null, "{r}");
    let r = query(
        Some(reader.clone()),
        "{ me { subject roles kind viaImport } }",
    )
    .await;
    assert_eq!(
        r["data"]["me"],
        json!({ "subject": "reader", "roles": ["reader"], "kind": "api_key", "viaImport": "reader" }),
        "{r}"
    );

    // `@auth`: anonymous → UNAUTHENTICATED, missing role → FORBIDDEN.
    let r = query(None, "{ signedIn }").await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{r}"
    );
    assert_eq!(r["errors"][0]["path"], json!(["signedIn"]));
    let r = query(Some(reader.clone()), "{ signedIn secret }").await;
    assert_eq!(r["data"]["signedIn"], "yes", "{r}");
    assert_eq!(r["data"]["secret"], Value::Null);
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("needs one of the roles [admin]")
    );
    let r = query(Some(admin), "{ secret }").await;
    assert_eq!(r["data"]["secret"], "the secret", "{r}");
}

async fn mcp_client(
    e: &Engine,
    bearer: Option<&str>,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(e.url("/mcp"));
    if let Some(b) = bearer {
        config = config.auth_header(b.to_string());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("kiln-e2e-identity", "1.0.0"),
    )
    .serve(transport)
    .await
    .expect("the MCP client connects")
}

#[tokio::test]
async fn mcp_tools_and_prompts_follow_their_roles() {
    let e = Engine::builder()
        .plugin("identity", "fixture-identity", None)
        .access("[access]\ndefault = \"authenticated\"\n[[access.rules]]\ntool = \"whoami\"\nallow = \"public\"\n")
        .start()
        .await;
    let reader = create_key(&e, "reader", "reader");
    let admin = create_key(&e, "boss", "admin");

    // Anonymous: sees and calls only the public tool; no prompt.
    let anon = mcp_client(&e, None).await;
    let tools: Vec<String> = anon
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(tools, vec!["whoami".to_string()]);
    assert!(anon.list_all_prompts().await.unwrap().is_empty());
    let e401 = anon
        .call_tool(CallToolRequestParams::new("purge"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e401.contains("needs authentication"), "{e401}");
    anon.cancel().await.unwrap();

    // A reader: the prompt, but not the admin tool.
    let client = mcp_client(&e, Some(&reader)).await;
    assert_eq!(client.list_all_prompts().await.unwrap().len(), 1);
    let e403 = client
        .call_tool(CallToolRequestParams::new("purge"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e403.contains("needs one of the roles [admin]"), "{e403}");
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let seen = result.structured_content.clone().unwrap_or_default();
    assert_eq!(seen["context"]["subject"], "reader", "{seen}");
    assert_eq!(seen["import"]["subject"], "reader", "{seen}");
    client.cancel().await.unwrap();

    let boss = mcp_client(&e, Some(&admin)).await;
    let result = boss
        .call_tool(CallToolRequestParams::new("purge"))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true));
    boss.cancel().await.unwrap();
}

#[tokio::test]
async fn key_changes_and_repeated_failures_land_in_the_audit_log() {
    let e = engine_with("").await;
    let cli_key = create_key(&e, "from-cli", "reader");
    let r = e
        .client
        .post(e.url("/_kiln/v1/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "from-api", "roles": ["admin"] }))
        .send()
        .await
        .unwrap();
    let api_key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    // The new admin key revokes the CLI's key: the actor is its name.
    let r = e
        .client
        .delete(e.url("/_kiln/v1/admin/keys/from-cli"))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..5 {
        assert_eq!(get(&e, "/whoami", Some("kk_nope")).await.0, 401);
    }

    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/audit?limit=10"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let events = body["events"].as_array().unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        seen,
        vec![
            ("127.0.0.1".to_string(), "auth.failures".to_string()),
            ("from-api".to_string(), "key.revoked".to_string()),
            ("admin-token".to_string(), "key.created".to_string()),
            ("cli".to_string(), "key.created".to_string()),
        ],
        "{body}"
    );
    assert_eq!(events[0]["detail"]["count"], 5, "{body}");
    assert_eq!(events[0]["target"], "/whoami");
    let text = body.to_string();
    assert!(
        !text.contains(&cli_key) && !text.contains(&api_key),
        "no secrets: {text}"
    );

    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/audit?limit=0"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_key_revoked_on_one_engine_is_refused_by_the_other_at_once() {
    let Some(redis) = kiln_e2e::TestRedis::start() else {
        return;
    };
    let config = format!("[redis]\nurl = {:?}", redis.url());
    // Keys on PostgreSQL, shared by both engines.
    let Some(pg) = kiln_e2e::TestPostgres::create().await else {
        return;
    };
    let shared = format!("{config}\n[database]\nurl = {:?}", pg.url);
    let (a, b) = tokio::join!(engine_with(&shared), engine_with(&shared));
    let key = create_key(&a, "shared", "reader");
    // Both engines have checked (and cached) the key.
    assert_eq!(get(&a, "/whoami", Some(&key)).await.0, 200);
    assert_eq!(get(&b, "/whoami", Some(&key)).await.0, 200);

    let r = a
        .client
        .delete(a.url("/_kiln/v1/admin/keys/shared"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // B hears it through Redis; give the message a moment.
    let (b_ref, key_ref) = (&b, key.as_str());
    kiln_e2e::wait_for(std::time::Duration::from_secs(5), move || async move {
        (get(b_ref, "/whoami", Some(key_ref)).await.0 == 401).then_some(())
    })
    .await;
    let (status, body, _) = get(&b, "/whoami", Some(&key)).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized", "revoked");

    // `kiln keys revoke` on the command line reaches running engines too.
    let other = create_key(&a, "other", "reader");
    assert_eq!(get(&b, "/whoami", Some(&other)).await.0, 200);
    let out = b.cli(&["keys", "revoke", "other"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a_ref, other_ref) = (&a, other.as_str());
    let refused = kiln_e2e::wait_for(std::time::Duration::from_secs(5), move || async move {
        (get(a_ref, "/whoami", Some(other_ref)).await.0 == 401).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "engine A still trusts the key revoked from the CLI"
    );
}

fn demo_signature(user: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("demo-secret-value:{user}")))
}

#[tokio::test]
async fn plugin_auth_providers_vouch_for_callers_and_fail_closed() {
    let e = Engine::builder()
        .plugin(
            "identity",
            "fixture-identity",
            Some("[config]\ndemo_secret = \"demo-secret-value\"\n[limits]\ntimeout_ms = 500"),
        )
        .access(ACCESS)
        .config("[identity]\nproviders = [\"fixture-identity/demo\"]")
        .start()
        .await;
    let with_user = |user: &str, sig: &str| {
        e.client
            .get(e.url("/whoami"))
            .header("x-demo-user", user.to_string())
            .header("x-demo-signature", sig.to_string())
            .send()
    };

    // A good signature: the provider's principal reaches the plugin.
    let r = with_user("ada", &demo_signature("ada")).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["caller"]["subject"], "ada", "{body}");
    assert_eq!(body["caller"]["kind"], "provider");
    assert_eq!(body["caller"]["roles"], json!(["member"]));
    assert_eq!(body["caller"]["claims"]["via"], "demo");

    // A bad one: 401 with the provider's reason.
    let r = with_user("ada", &demo_signature("bob")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_error(
        &r.json().await.unwrap(),
        "unauthorized",
        "fixture-identity/demo: the demo signature does not match",
    );

    // A provider that traps or runs out of time fails closed.
    for user in ["trap", "slow"] {
        let r = with_user(user, "x").await.unwrap();
        assert_eq!(r.status(), 401, "{user}");
        assert_error(
            &r.json().await.unwrap(),
            "unauthorized",
            "failed, so the request is refused",
        );
    }

    // Not the provider's kind of request: anonymous, and the rules decide.
    assert_eq!(get(&e, "/whoami", None).await.0, 401);
    assert_eq!(get(&e, "/open/whoami", None).await.0, 200);
    // API keys are still checked by the engine itself.
    let key = create_key(&e, "k", "reader");
    assert_eq!(get(&e, "/whoami", Some(&key)).await.0, 200);
}

#[tokio::test]
async fn a_configured_provider_that_is_not_loaded_refuses_requests() {
    let e = Engine::builder()
        .plugin("hello", "hello-rust", None)
        .access("[access]\ndefault = \"public\"")
        .config("[identity]\nproviders = [\"missing/provider\"]")
        .start()
        .await;
    let (status, body, _) = get(&e, "/hello/a", None).await;
    assert_eq!(status, 503);
    assert_error(
        &body,
        "auth_unavailable",
        "'missing/provider' is not loaded",
    );
}

#[tokio::test]
async fn the_auth_rust_example_trusts_headers_signed_with_its_key() {
    use hmac::{Hmac, KeyInit, Mac};
    let e = Engine::builder()
        .plugin("auth-rust", "auth-rust", None)
        .config("[plugins.auth-rust.secrets]\nsigning_key = \"KILN_E2E_SIGNING_KEY\"")
        .plugin("identity", "fixture-identity", None)
        .env("KILN_E2E_SIGNING_KEY", "frontend-and-engine-share-this")
        .access(ACCESS)
        .config("[identity]\nproviders = [\"auth-rust/signed-header\"]")
        .start()
        .await;
    let sign = |key: &str, user: &str, roles: &str, at: u64| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(format!("{user}\n{roles}\n{at}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let call = |user: &str, roles: &str, at: u64, signature: String| {
        e.client
            .post(e.url("/docs"))
            .header("x-signed-user", user.to_string())
            .header("x-signed-roles", roles.to_string())
            .header("x-signed-at", at.to_string())
            .header("x-signature", signature)
            .send()
    };
    let key = "frontend-and-engine-share-this";
    let r = call("ada", "editor", now(), sign(key, "ada", "editor", now()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["caller"]["subject"], "ada", "{body}");
    assert_eq!(body["caller"]["roles"], json!(["editor"]));

    // Roles are signed too: claiming more breaks the signature.
    let r = call(
        "ada",
        "editor,admin",
        now(),
        sign(key, "ada", "editor", now()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_error(
        &r.json().await.unwrap(),
        "unauthorized",
        "signature does not match",
    );
    // Another key, or an old signature: refused.
    let r = call(
        "ada",
        "editor",
        now(),
        sign("another-key", "ada", "editor", now()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let old = now() - 3600;
    let r = call("ada", "editor", old, sign(key, "ada", "editor", old))
        .await
        .unwrap();
    assert_error(&r.json().await.unwrap(), "unauthorized", "expired");
    // Signed in, but without the role the rule asks for.
    let r = call("bob", "reader", now(), sign(key, "bob", "reader", now()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
