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

    let body = wait_for(Duration::from_secs(10), || async {
        let r = e.get("/greet/Ada").await;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await
    .expect("the built plugin was not served");
    assert_eq!(body, r#"{"message":"Hello, Ada!"}"#);
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no Cargo.toml"));
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
