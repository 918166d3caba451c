//! Compiled components on disk, keyed by the wasm's SHA-256 and the engine's
//! compatibility hash (wasmtime version + every setting that changes code,
//! fuel on/off included). A restart or an unchanged reload maps the file in
//! instead of compiling again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load hit the cache, for logs and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Compiled,
    Disabled,
}

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompileCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        CompileCache { dir, engine_key }
    }

    fn path_for(&self, dir: &Path, wasm_hash: &str) -> PathBuf {
        dir.join(format!("{wasm_hash}-{}.cwasm", self.engine_key))
    }

    /// The component for `wasm` (from plugin file `file`), from the cache
    /// when possible. Blocking: call it off the async runtime. A compile is
    /// logged when it starts and when it ends: a big component takes
    /// seconds, and the log should say what the engine is doing meanwhile.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_hash: &str,
        file: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            let started = compiling(file, wasm.len());
            let component = Component::new(engine, wasm);
            release_freed_heap();
            compiled(file, started, component.is_ok());
            return Ok((component?, CacheOutcome::Disabled));
        };
        let path = self.path_for(dir, wasm_hash);
        if path.exists() {
            // SAFETY: files in the cache directory are written only by this
            // function, from `precompile_component` of an engine with the
            // same compatibility hash (it is in the file name); wasmtime
            // also checks the header and refuses a mismatch.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled-component cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let started = compiling(file, wasm.len());
        let precompiled = engine.precompile_component(wasm);
        compiled(file, started, precompiled.is_ok());
        let compiled = precompiled?;
        let written = write_atomically(dir, &path, &compiled);
        let component = match written {
            // Mapped from the file like a cache hit: the code pages are the
            // page cache's, not the engine's heap.
            // SAFETY: the file was just written from `precompile_component`
            // of this engine.
            Ok(()) => {
                drop(compiled);
                unsafe { Component::deserialize_file(engine, &path) }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write compiled-component cache; continuing without it");
                // SAFETY: `compiled` was just produced by `precompile_component` on this engine.
                unsafe { Component::deserialize(engine, &compiled) }
            }
        };
        release_freed_heap();
        Ok((component?, CacheOutcome::Compiled))
    }
}

fn compiling(file: &str, bytes: usize) -> std::time::Instant {
    // Megabytes with one decimal, for people: the byte count is a field.
    let mb = bytes as f64 / 1_000_000.0;
    tracing::info!(file, bytes, "compiling {file} ({mb:.1} MB)…");
    std::time::Instant::now()
}

fn compiled(file: &str, started: std::time::Instant, ok: bool) {
    let ms = started.elapsed().as_millis() as u64;
    if ok {
        tracing::info!(file, ms, "compiled {file} in {ms} ms");
    } else {
        tracing::warn!(file, ms, "compiling {file} failed after {ms} ms");
    }
}

/// Compiling a large component (a JavaScript one above all) allocates
/// hundreds of megabytes that are free again afterwards, but glibc's malloc
/// keeps freed heap mapped: the engine would sit at ~450 MB instead of
/// ~70 MB after compiling one. Hand it back to the system.
fn release_freed_heap() {
    crate::memory::release_freed_heap();
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Feeds `Hash` output into SHA-256 so the key is stable across runs (std's
/// hashers are not guaranteed to be).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}
