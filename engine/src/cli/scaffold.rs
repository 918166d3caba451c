//! `kiln new NAME [--lang rust|js]`: a plugin that builds as is — a Rust
//! crate, or a JavaScript package with editor types for the `kiln` module.

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

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
}

/// Writes the plugin into `dir` (which must not exist yet).
pub fn create(name: &str, dir: &Path, sdk: &Path, lang: Lang) -> anyhow::Result<()> {
    check_name(name)?;
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or directory",
            dir.display()
        );
    }
    let sub = if lang == Lang::Rust {
        dir.join("src")
    } else {
        dir.to_path_buf()
    };
    std::fs::create_dir_all(sub).with_context(|| format!("cannot create {}", dir.display()))?;
    let settings_file = format!("{name}.toml");
    let files = match lang {
        Lang::Rust => vec![
            ("Cargo.toml", cargo_toml(name, sdk)),
            ("src/lib.rs", LIB_RS.to_string()),
            (".gitignore", "/target\n".to_string()),
            (
                settings_file.as_str(),
                plugin_toml("kiln_sdk::config::get(\"greeting\")"),
            ),
        ],
        Lang::Js => vec![
            ("package.json", package_json(name)),
            ("index.js", INDEX_JS.to_string()),
            ("jsconfig.json", jsconfig(sdk)),
            (".gitignore", "/dist\n/node_modules\n".to_string()),
            (
                settings_file.as_str(),
                format!("{}{OUTBOUND_TOML}", plugin_toml("config.get('greeting')")),
            ),
        ],
    };
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

fn package_json(name: &str) -> String {
    let doc = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "description": "A Kiln plugin",
        "private": true,
        "type": "module",
        "main": "index.js",
        "scripts": { "build": "kiln build ." }
    });
    // Cannot fail: a JSON value always serializes.
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// Editor settings: type-check the plugin against the SDK's declarations of
/// the `kiln` module.
fn jsconfig(sdk: &Path) -> String {
    let types = sdk
        .join("js")
        .join("index.d.ts")
        .display()
        .to_string()
        .replace('\\', "/");
    let doc = serde_json::json!({
        "compilerOptions": {
            "checkJs": true,
            "noEmit": true,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "lib": ["ES2022", "DOM"]
        },
        "files": [types],
        "include": ["**/*.js", "**/*.ts"],
        "exclude": ["dist", "node_modules"]
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

const INDEX_JS: &str = r#"// A Kiln plugin. Build it with `kiln build`; the engine serves its routes as
// soon as the .wasm lands in the plugin directory. Types for the `kiln`
// module come from jsconfig.json; see docs/plugins-js.md.
import { Router, json, log, KilnError } from 'kiln';

export const routes = new Router()
  // GET /greet/{name}
  .get('/greet/{name}', (req) => json({ message: `Hello, ${req.params.name}!` }))
  // POST /greet with {"name": "..."}
  .post('/greet', (req) => {
    const { name } = req.json();
    if (typeof name !== 'string') throw new KilnError('bad-request', 'send {"name": "..."}');
    log.info(`greeting ${name}`);
    return json({ message: `Hello, ${name}!` });
  });
"#;

const OUTBOUND_TOML: &str = r#"
[outbound]
# Hosts fetch() may reach ("api.example.com", "https://x.dev", "http://127.0.0.1:9000",
# "*.example.org"); anything else is refused. None by default.
# allowed_hosts = []
"#;

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

/// The settings file of a new plugin; `read_with` is how its language reads
/// a setting.
fn plugin_toml(read_with: &str) -> String {
    PLUGIN_TOML.replace("{read_with}", read_with)
}

const PLUGIN_TOML: &str = r#"# Settings the engine reads from <plugin>.toml beside the .wasm (kiln build
# copies this file there). Everything is optional. Limits may only be lower
# than the engine's [limits]; secrets are granted by the operator in the
# engine config ([plugins.<plugin>.secrets]), never here.

[limits]
# timeout_ms = 10000       # wall-clock time per call
# fuel = 2000000000        # instructions per call (runtime.cpu_limit = "fuel")
# memory = "64MiB"         # linear memory per instance
# max_concurrency = 64     # calls at once
# queue_size = 256         # calls waiting for a slot; more get 503
# queue_timeout_ms = 2000  # longest wait for a slot

[config]
# greeting = "Hello"       # read with {read_with}
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
        create("my-api", &dir, Path::new("/opt/kiln/sdk-guest"), Lang::Rust).unwrap();
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-api\""));
        assert!(cargo.contains("path = \"/opt/kiln/sdk-guest\""));
        assert!(cargo.contains("[workspace]"));
        assert!(dir.join("src/lib.rs").is_file());
        let settings = std::fs::read_to_string(dir.join("my-api.toml")).unwrap();
        assert!(
            settings.contains(r#"read with kiln_sdk::config::get("greeting")"#),
            "{settings}"
        );
        assert!(
            create("my-api", &dir, Path::new("/x"), Lang::Rust)
                .unwrap_err()
                .to_string()
                .contains("exists")
        );
    }

    #[test]
    fn scaffold_writes_a_js_package() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my-js");
        create("my-js", &dir, Path::new("/opt/kiln/sdk-guest"), Lang::Js).unwrap();
        let pkg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap())
                .unwrap();
        assert_eq!(pkg["name"], "my-js");
        assert_eq!(pkg["type"], "module");
        let js = std::fs::read_to_string(dir.join("index.js")).unwrap();
        assert!(js.contains("from 'kiln'"));
        let jsconfig = std::fs::read_to_string(dir.join("jsconfig.json")).unwrap();
        assert!(
            jsconfig.contains("/opt/kiln/sdk-guest/js/index.d.ts"),
            "{jsconfig}"
        );
        assert!(
            std::fs::read_to_string(dir.join("my-js.toml"))
                .unwrap()
                .contains("[outbound]")
        );
        // Each language's settings file says how that language reads one.
        let js = std::fs::read_to_string(dir.join("my-js.toml")).unwrap();
        assert!(js.contains("read with config.get('greeting')"), "{js}");
        assert!(!js.contains("kiln_sdk"), "{js}");
        assert!(!dir.join("Cargo.toml").exists());
    }
}
