use std::process::Command;
use std::time::Duration;

use kiln_e2e::{Engine, kiln_bin, wait_for, workspace_root};

/// The user's path: `kiln new`, `kiln build` into a running engine's plugin
/// directory, and the route is live without a restart.
#[tokio::test]
async fn new_and_build_produce_a_plugin_the_engine_serves() {
    let e = Engine::builder().start().await;
    let work = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("greeter");
    let out = Command::new(kiln_bin())
        .args(["new", "greeter", "--dir"])
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Share a target dir between runs so dependencies compile once.
    let target = workspace_root().join("target/e2e-kiln-new");
    let out = Command::new(kiln_bin())
        .arg("build")
        .arg(&crate_dir)
        .arg("--plugins")
        .arg(e.plugins_dir())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(e.plugins_dir().join("greeter.wasm").is_file());
    assert!(e.plugins_dir().join("greeter.toml").is_file());

    // A bound for a busy machine, not a speed target: the engine compiles
    // the new file beside the rest of the suite (10 s was once too few).
    let body = wait_for(Duration::from_secs(120), || async {
        let r = e.get("/greet/Ada").await;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await
    .expect("the built plugin was not served");
    assert_eq!(body, r#"{"message":"Hello, Ada!"}"#);

    // Without --plugins, `kiln build` installs where the engine config's
    // plugins_dir says (--config or KILN_CONFIG), so it is written once.
    let elsewhere = work.path().join("served-plugins");
    let config = work.path().join("kiln.toml");
    std::fs::write(&config, format!("plugins_dir = {elsewhere:?}\n")).unwrap();
    for by_env in [false, true] {
        let _ = std::fs::remove_dir_all(&elsewhere);
        let mut build = Command::new(kiln_bin());
        build
            .arg("build")
            .arg(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("KILN_PLUGINS_DIR");
        if by_env {
            build.env("KILN_CONFIG", &config);
        } else {
            build.arg("--config").arg(&config);
        }
        let out = build.output().unwrap();
        assert!(
            out.status.success(),
            "kiln build (config from {}) failed:\n{}",
            if by_env { "KILN_CONFIG" } else { "--config" },
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            elsewhere.join("greeter.wasm").is_file(),
            "by_env = {by_env}"
        );
    }
}

#[test]
fn build_explains_a_missing_crate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(kiln_bin())
        .arg("build")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has neither Cargo.toml nor package.json")
    );
}

#[test]
fn every_command_has_help() {
    for cmd in ["serve", "new", "build"] {
        let out = Command::new(kiln_bin())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: kiln"), "{cmd}: {text}");
    }
}

#[test]
fn a_bad_config_stops_start_up_with_the_key_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("kiln.toml");
    std::fs::write(&cfg, "[limits]\nmemory = \"9 parsecs\"\n").unwrap();
    let out = Command::new(kiln_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kiln.toml") && err.contains("unknown size unit"),
        "{err}"
    );
}

/// `kiln keys`: a key is printed once, listed without its secret, stored
/// only as a hash, and revoked by name.
#[test]
fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let kiln = |args: &[&str]| {
        Command::new(kiln_bin())
            .args(["keys"])
            .args(args)
            .env("KILN_DATA_DIR", data.path())
            .env("KILN_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = kiln(&["create", "--name", "ci", "--roles", "reader,writer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("kk_") && key.len() == 55, "{key}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shown only now"), "{stderr}");

    let out = kiln(&["list"]);
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains(&key[..11]), "{listed}");
    assert!(
        listed.contains("ci") && listed.contains("active") && listed.contains("reader,writer"),
        "{listed}"
    );
    assert!(
        !listed.contains(&key[12..]),
        "the secret part must never be listed"
    );
    // Dates in RFC 3339 (`2026-12-01T09:20:05Z`), not unix seconds.
    let rfc3339 = |w: &str| {
        let b = w.as_bytes();
        w.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && w.ends_with('Z')
    };
    assert!(
        listed.split_whitespace().any(rfc3339),
        "no RFC 3339 date in {listed}"
    );

    // The database holds the hash, not the key.
    let db = std::fs::read(data.path().join("kiln.db")).unwrap();
    let secret = &key.as_bytes()[12..];
    assert!(!db.windows(secret.len()).any(|w| w == secret));

    let out = kiln(&["create", "--name", "ci"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = kiln(&["revoke", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(kiln(&["list"]).stdout).unwrap();
    assert!(listed.contains("revoked"), "{listed}");
    let out = kiln(&["revoke", "ci"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active API key"));
}

#[tokio::test]
async fn dev_mode_opens_access_prints_an_admin_token_and_answers_crashes_in_full() {
    let e = Engine::builder()
        .dev()
        .plugin("limits", "fixture-limits", None)
        .start()
        .await;
    // No [access] in the config: everything is public.
    assert_eq!(e.get("/limits/ok").await.status(), 200);
    // The token printed at start opens the admin API.
    let banner = e.log_lines_with(&["admin token for this run:"]);
    let token = banner
        .first()
        .and_then(|l| l.split("admin token for this run: ").nth(1))
        .map(str::trim)
        .expect("the banner names the token")
        .to_string();
    assert!(token.starts_with("dev-"), "{token}");
    let r = e
        .client
        .get(e.url("/_kiln/v1/admin/plugins"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A crash answers with its panic message.
    let r = e.get("/limits/panic").await;
    assert_eq!(r.status(), 500);
    let body: kiln_e2e::Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("fixture panic on purpose"), "{message}");
}

#[test]
fn dev_mode_refuses_an_address_that_is_not_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(kiln_bin())
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--plugins"])
        .arg(dir.path().join("plugins"))
        .env("KILN_DATA_DIR", dir.path().join("data"))
        .env_remove("KILN_CONFIG")
        .env_remove("KILN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--dev serves on a loopback address only"),
        "{stderr}"
    );
}
