//! `kiln build [PATH]`: compile a plugin to a component and place it (and its
//! `<name>.toml`, if any) in the plugin directory, atomically, so a running
//! engine never reads a half-written file. A folder with `Cargo.toml` is a
//! Rust crate built for wasm32-wasip2; one with `package.json` is a
//! JavaScript plugin, bundled and componentized by the JS SDK's build script.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub const TARGET: &str = "wasm32-wasip2";

pub struct Built {
    pub name: String,
    pub wasm: PathBuf,
    pub installed: PathBuf,
}

/// Builds the plugin at `path` and copies its component into `plugins_dir`.
pub fn build(path: &Path, plugins_dir: &Path, release: bool) -> anyhow::Result<Built> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        if path.join("package.json").is_file() {
            return build_js(path, plugins_dir, release);
        }
        bail!(
            "{} has neither Cargo.toml nor package.json; point kiln build at a plugin folder \
             (kiln new makes one)",
            path.display()
        );
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target")
        .arg(TARGET)
        .arg("--lib")
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    let mut child = cmd
        .spawn()
        .context("cannot run cargo; is Rust installed?")?;
    let stdout = child
        .stdout
        .take()
        .context("cargo produced no output stream")?;
    let mut wasm: Option<(String, PathBuf)> = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo output")?;
        if let Some(found) = artifact(&line) {
            wasm = Some(found);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed (see above). If it says the {TARGET} target is missing, run \
             `rustup target add {TARGET}`"
        );
    }
    let Some((name, wasm)) = wasm else {
        bail!("cargo built no .wasm; the crate needs `[lib] crate-type = [\"cdylib\"]`");
    };
    install(path, plugins_dir, name, wasm)
}

/// Copies the built component, and the plugin's settings file if it has
/// one, into the plugin directory.
fn install(path: &Path, plugins_dir: &Path, name: String, wasm: PathBuf) -> anyhow::Result<Built> {
    std::fs::create_dir_all(plugins_dir)
        .with_context(|| format!("cannot create {}", plugins_dir.display()))?;
    let installed = plugins_dir.join(format!("{name}.wasm"));
    let settings = path.join(format!("{name}.toml"));
    if settings.is_file() {
        copy_atomically(&settings, &plugins_dir.join(format!("{name}.toml")))?;
    }
    copy_atomically(&wasm, &installed)?;
    Ok(Built {
        name,
        wasm,
        installed,
    })
}

/// Builds a JavaScript plugin: installs the JS SDK's toolchain (once) and
/// the plugin's own npm dependencies (when it has some and they are not
/// installed), then runs the SDK's build script.
fn build_js(path: &Path, plugins_dir: &Path, release: bool) -> anyhow::Result<Built> {
    let package: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.join("package.json"))
            .with_context(|| format!("cannot read {}/package.json", path.display()))?,
    )
    .with_context(|| format!("{}/package.json is not valid JSON", path.display()))?;
    let name = package["name"]
        .as_str()
        .context("package.json has no \"name\": it is the plugin name")?
        .to_string();
    super::scaffold::check_name(&name)?;
    let sdk = super::scaffold::sdk_path(None)?;
    let js_sdk = sdk.join("js");
    let wit = sdk.join("..").join("wit");
    if !js_sdk
        .join("node_modules")
        .join("@bytecodealliance")
        .is_dir()
    {
        // `install` on the lock file: see the Makefile's js-sdk target.
        npm(&js_sdk, "install")?;
    }
    let has_deps = package["dependencies"]
        .as_object()
        .is_some_and(|d| !d.is_empty());
    if has_deps && !path.join("node_modules").is_dir() {
        let verb = if path.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        npm(path, verb)?;
    }
    let out = path.join("dist").join(format!("{name}.wasm"));
    let mut cmd = Command::new(node());
    cmd.arg(js_sdk.join("build.mjs"))
        .arg("--plugin")
        .arg(path)
        .arg("--wit")
        .arg(&wit)
        .arg("--out")
        .arg(&out);
    if !release {
        cmd.arg("--debug");
    }
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .context("cannot run node; install Node.js 20 or newer (or set KILN_NODE)")?;
    if !status.success() {
        bail!("building the JavaScript plugin failed (see above)");
    }
    install(path, plugins_dir, name, out)
}

fn node() -> std::ffi::OsString {
    std::env::var_os("KILN_NODE").unwrap_or_else(|| "node".into())
}

fn npm(dir: &Path, verb: &str) -> anyhow::Result<()> {
    eprintln!("kiln build: npm {verb} in {}", dir.display());
    let status = Command::new("npm")
        .arg(verb)
        .args(["--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .context("cannot run npm; install Node.js 20 or newer")?;
    if !status.success() {
        bail!("npm {verb} failed in {}", dir.display());
    }
    Ok(())
}

/// A `compiler-artifact` line for a cdylib: (plugin name, path of the .wasm).
fn artifact(line: &str) -> Option<(String, PathBuf)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["reason"] != "compiler-artifact" {
        return None;
    }
    let kinds = v["target"]["kind"].as_array()?;
    if !kinds.iter().any(|k| k == "cdylib") {
        return None;
    }
    let file = v["filenames"]
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))?;
    let name = v["target"]["name"].as_str()?.replace('_', "-");
    Some((name, PathBuf::from(file)))
}

/// Copies through a hidden temporary file and a rename, so the watcher sees
/// either the old file or the whole new one.
pub fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("cannot move {} into place", to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_read_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["cdylib"],"name":"hello_rust"},"filenames":["/t/hello_rust.wasm"]}"#;
        assert_eq!(
            artifact(line),
            Some(("hello-rust".into(), PathBuf::from("/t/hello_rust.wasm")))
        );
        let dep = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"serde"},"filenames":["/t/libserde.rlib"]}"#;
        assert_eq!(artifact(dep), None);
        assert_eq!(artifact("not json"), None);
    }
}
