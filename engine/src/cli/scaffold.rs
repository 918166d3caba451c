//! `kiln new NAME`: a Rust plugin crate that builds as is.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the guest SDK lives: `KILN_SDK_PATH`, else the SDK of the source
/// tree this binary was built from.
pub fn sdk_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidate = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("KILN_SDK_PATH") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-guest"),
        },
    };
    let path = candidate.canonicalize().with_context(|| {
        format!(
            "cannot find the Kiln guest SDK at {}; pass --sdk PATH or set KILN_SDK_PATH to the \
             sdk-guest folder of a Kiln checkout",
            candidate.display()
        )
    })?;
    if !path.join("Cargo.toml").is_file() {
        bail!(
            "{} is not the Kiln guest SDK (no Cargo.toml)",
            path.display()
        );
    }
    Ok(path)
}

/// Checks `name` is both a valid crate name and a valid plugin name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "plugin name {name:?} must be 1-64 characters of a-z, 0-9, '-' and '_', starting \
             with a letter"
        );
    }
    Ok(())
}

/// Writes the crate into `dir` (which must not exist yet).
pub fn create(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    check_name(name)?;
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let settings_file = format!("{name}.toml");
    let files = [
        ("Cargo.toml", cargo_toml(name, sdk)),
        ("src/lib.rs", LIB_RS.to_string()),
        (".gitignore", "/target\n".to_string()),
        (settings_file.as_str(), PLUGIN_TOML.to_string()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    let sdk = sdk.display().to_string().replace('\\', "/");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
description = "A Kiln plugin"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
kiln-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
debug = false
strip = true

# A plugin is its own workspace, wherever it is created.
[workspace]
"#
    )
}

const LIB_RS: &str = r#"//! A Kiln plugin. Build it with `kiln build`; the engine serves its routes
//! as soon as the .wasm lands in the plugin directory.

use kiln_sdk::{Plugin, Request, Response, Result, Router};
use serde::Deserialize;
use serde_json::json;

struct App;

impl Plugin for App {
    fn routes() -> Router {
        Router::new()
            .get("/greet/{name}", greet)
            .post("/greet", greet_json)
    }
}

/// GET /greet/{name}
fn greet(req: Request) -> Result<Response> {
    let name = req.param("name").unwrap_or("world");
    Response::json(&json!({ "message": format!("Hello, {name}!") }))
}

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

/// POST /greet with {"name": "..."}
fn greet_json(req: Request) -> Result<Response> {
    let input: Greeting = req.json()?;
    kiln_sdk::log::info(&format!("greeting {}", input.name));
    Response::json(&json!({ "message": format!("Hello, {}!", input.name) }))
}

kiln_sdk::export_plugin!(App);
"#;

const PLUGIN_TOML: &str = r#"# Settings the engine reads from <plugin>.toml beside the .wasm (kiln build
# copies this file there). Everything is optional.

[limits]
# timeout_ms = 10000       # wall-clock time per call
# fuel = 2000000000        # instructions per call (runtime.cpu_limit = "fuel")
# memory = "64MiB"         # linear memory per instance
# max_concurrency = 64     # calls at once
# queue_size = 256         # calls waiting for a slot; more get 503
# queue_timeout_ms = 2000  # longest wait for a slot

[config]
# greeting = "Hello"       # read with kiln_sdk::config::get("greeting")
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-api").is_ok());
        assert!(check_name("api_2").is_ok());
        for bad in ["", "My", "1api", "a b", "-x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scaffold_writes_a_standalone_crate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my-api");
        create("my-api", &dir, Path::new("/opt/kiln/sdk-guest")).unwrap();
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-api\""));
        assert!(cargo.contains("path = \"/opt/kiln/sdk-guest\""));
        assert!(cargo.contains("[workspace]"));
        assert!(dir.join("src/lib.rs").is_file());
        assert!(dir.join("my-api.toml").is_file());
        assert!(
            create("my-api", &dir, Path::new("/x"))
                .unwrap_err()
                .to_string()
                .contains("exists")
        );
    }
}
