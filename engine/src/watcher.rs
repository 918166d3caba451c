//! Keeps the registry in step with the plugin directory: a `notify` watcher
//! signals changes, a quiet period (debounce) lets writers finish, then one
//! reload pass compiles and describes what changed — off the request path —
//! validates it against everything else and swaps a new snapshot in.
//!
//! A file that fails at any step leaves the previous good version serving
//! and records the reason, for the log and the admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{Config, PluginSettings};
use crate::front_door::{FrontDoors, NotAdmitted};
use crate::hash::sha256_hex;
use crate::host::outbound::{OutboundCeiling, OutboundPolicy};
use crate::registry::{PluginStatus, Registry, Snapshot};
use crate::routes::RouteTable;
use crate::runtime::{Plugin, PluginSource, Runtime};
use crate::store::plugin_names::{Claimed, PluginNames};

/// Files larger than this are refused before reading them whole.
const MAX_PLUGIN_FILE: u64 = 256 * 1024 * 1024;

/// A plugin file and its optional settings file, as found on disk.
struct Found {
    wasm: PathBuf,
    settings: Option<PathBuf>,
}

/// What the last attempt at a stem saw, to skip files that did not change.
#[derive(Clone, PartialEq, Eq)]
struct Fingerprint {
    wasm: String,
    settings: Option<String>,
}

pub struct Reloader {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    config: Arc<Config>,
    /// `[outbound] allowed_hosts`: what a plugin's own file may ask for.
    outbound_ceiling: OutboundCeiling,
    /// What each front door asks, admits and catalogs.
    doors: FrontDoors,
    /// Which file owns each plugin name (and with it the name's data).
    names: PluginNames,
    seen: BTreeMap<String, Fingerprint>,
}

impl Reloader {
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        config: Arc<Config>,
        doors: FrontDoors,
        names: PluginNames,
    ) -> Self {
        Reloader {
            runtime,
            registry,
            outbound_ceiling: config.section::<OutboundCeiling>(),
            config,
            doors,
            names,
            seen: BTreeMap::new(),
        }
    }

    /// One pass: load what changed, unmount what is gone, publish.
    pub async fn sync(&mut self) {
        let found = match scan(&self.config.plugins_dir) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(dir = %self.config.plugins_dir.display(), error = %e, "cannot read the plugin directory");
                return;
            }
        };
        let current = self.registry.snapshot();
        let mut statuses = self.registry.statuses();

        // Gone: unmount.
        let removed: Vec<String> = self
            .seen
            .keys()
            .filter(|stem| !found.contains_key(*stem))
            .cloned()
            .collect();
        for stem in &removed {
            self.seen.remove(stem);
            statuses.remove(stem);
            if current.plugins.contains_key(stem) {
                tracing::info!(plugin = %stem, "plugin file removed; its routes are unmounted");
            }
        }

        // Changed or new: load, in file-name order so "the later one" is well defined.
        let mut loaded: Vec<Plugin> = Vec::new();
        let mut failed = false;
        let mut shown_loading = false;
        for (stem, files) in &found {
            let (wasm, settings_text) = match read_files(files) {
                Ok(v) => v,
                Err(e) => {
                    failed |= record_failure(&self.doors, &mut statuses, stem, files, e, None);
                    continue;
                }
            };
            let fingerprint = Fingerprint {
                wasm: sha256_hex(&wasm),
                settings: settings_text.as_deref().map(|t| sha256_hex(t.as_bytes())),
            };
            if self.seen.get(stem) == Some(&fingerprint) {
                continue;
            }
            self.seen.insert(stem.clone(), fingerprint.clone());
            let source = match self.source(stem, files, wasm, settings_text.as_deref()) {
                Ok(source) => source,
                Err(e) => {
                    failed |= record_failure(
                        &self.doors,
                        &mut statuses,
                        stem,
                        files,
                        e,
                        Some(fingerprint.wasm),
                    );
                    continue;
                }
            };
            let status = statuses
                .remove(stem)
                .unwrap_or_else(|| PluginStatus::never_loaded(file_name(&files.wasm), &self.doors))
                .start_loading(fingerprint.wasm.clone(), source.wasm.len() as u64);
            self.registry.set_status(stem, status.clone());
            statuses.insert(stem.clone(), status);
            // The loading status is out: this pass must publish its end.
            shown_loading = true;
            // Load, let every front door describe it, bind its name.
            let outcome = match self.runtime.load(source).await {
                Ok(mut plugin) => match self.doors.describe(&mut plugin).await {
                    Ok(()) => match self.claim_name(&plugin).await {
                        Ok(()) => Ok(plugin),
                        Err(e) => {
                            // Retried on the next pass: the name may be released.
                            self.seen.remove(stem);
                            Err(e.to_string())
                        }
                    },
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(plugin) => loaded.push(plugin),
                Err(e) => {
                    let attempted = Some(fingerprint.wasm);
                    failed |= record_failure(&self.doors, &mut statuses, stem, files, e, attempted);
                }
            }
        }
        if removed.is_empty()
            && loaded.is_empty()
            && !failed
            && !shown_loading
            && current.graphql.is_some()
        {
            return;
        }

        // Compose: plugins that did not change keep their place; each newly
        // loaded one must fit beside them or is refused. Admission repeats
        // until nothing more fits, so order of files never matters for a
        // plugin that extends a type another one defines.
        let reloaded: Vec<String> = loaded.iter().map(|p| p.stem.clone()).collect();
        let mut next = Snapshot {
            plugins: BTreeMap::new(),
            routes: RouteTable::new(),
            graphql: None,
            mcp: Default::default(),
        };
        let unchanged: Vec<Arc<Plugin>> = current
            .plugins
            .iter()
            .filter(|(stem, _)| !removed.contains(stem) && !reloaded.contains(stem))
            .map(|(_, p)| p.clone())
            .collect();
        let candidates = unchanged
            .into_iter()
            .chain(loaded.into_iter().map(Arc::new))
            .collect();
        let refused = admit_all(&mut next, candidates, &self.doors);
        // A refused new version falls back to the serving one, if it fits.
        let (refused_unchanged, refused_new): (Vec<_>, Vec<_>) = refused
            .into_iter()
            .partition(|(p, _)| !reloaded.contains(&p.stem));
        let fallbacks: Vec<Arc<Plugin>> = refused_new
            .iter()
            .filter_map(|(p, _)| current.plugins.get(&p.stem).cloned())
            .chain(refused_unchanged.iter().map(|(p, _)| p.clone()))
            .collect();
        let still_out = admit_all(&mut next, fallbacks, &self.doors);
        for plugin in next.plugins.values() {
            if reloaded.contains(&plugin.stem)
                && !refused_new.iter().any(|(p, _)| p.stem == plugin.stem)
            {
                let status = PluginStatus::serving(plugin, &self.doors);
                // What each front door serves of it, as the admin API shows it.
                let serves = serde_json::Value::Object(status.parts.clone());
                tracing::info!(
                    plugin = %plugin.manifest.name,
                    version = %plugin.manifest.version,
                    file = %plugin.path.display(),
                    %serves,
                    cache = ?plugin.cache,
                    "plugin loaded"
                );
                statuses.insert(plugin.stem.clone(), status);
            }
        }
        for (plugin, reason) in refused_new {
            let stem = plugin.stem.clone();
            tracing::error!(file = %plugin.path.display(), error = %reason, "plugin refused");
            // The status of the version that goes on serving (its hash,
            // routes, load time), or a fresh one if none does.
            let status = match (next.plugins.get(&stem), statuses.remove(&stem)) {
                (Some(_), Some(serving)) => serving,
                (Some(previous), None) => PluginStatus::serving(previous, &self.doors),
                (None, _) => PluginStatus::never_loaded(file_name(&plugin.path), &self.doors),
            };
            statuses.insert(
                stem.clone(),
                status.failed(reason, Some(plugin.hash.clone())),
            );
            // Try again on the next pass: what it conflicted with may be gone.
            self.seen.remove(&stem);
        }
        for (plugin, reason) in still_out {
            if next.plugins.contains_key(&plugin.stem) || reloaded.contains(&plugin.stem) {
                continue; // a previous version that did not fit either: reported above
            }
            // An unchanged plugin that no longer fits: only when a plugin it
            // depended on (a type it extends) left or changed.
            tracing::error!(plugin = %plugin.stem, error = %reason, "unmounting a plugin that no longer fits");
            statuses.insert(
                plugin.stem.clone(),
                PluginStatus::never_loaded(file_name(&plugin.path), &self.doors)
                    .failed(reason, Some(plugin.hash.clone())),
            );
            self.seen.remove(&plugin.stem);
        }
        self.doors.finish(&mut next, &current);
        self.registry.publish(next, statuses);
    }

    /// Binds the plugin's name to its file, or refuses it when another file
    /// owns the name: the name decides which data the plugin reaches, and
    /// what a guest says about itself must never get it another's data.
    async fn claim_name(&self, plugin: &Plugin) -> Result<(), ClaimError> {
        let name = plugin.manifest.name.clone();
        let file = plugin.file_name();
        match self.names.claim(&name, &file).await {
            Ok(Claimed::Owned) => Ok(()),
            Ok(Claimed::Taken(owner)) => Err(ClaimError::Taken {
                name,
                file,
                since: crate::store::rfc3339(owner.claimed_at),
                owner: owner.file,
            }),
            Err(source) => Err(ClaimError::Store { name, source }),
        }
    }

    fn source(
        &self,
        stem: &str,
        files: &Found,
        wasm: Vec<u8>,
        settings_text: Option<&str>,
    ) -> Result<PluginSource, String> {
        let mut settings = match (&files.settings, settings_text) {
            (Some(path), Some(text)) => {
                let own = PluginSettings::parse(path, text).map_err(|e| e.to_string())?;
                // The plugin's author wrote this file (`kiln build` copies
                // it): it may ask for less than the engine allows, never more.
                self.config.check_plugin_file(stem, path, &own)?;
                self.outbound_ceiling.check_plugin_file(
                    stem,
                    path,
                    &own,
                    self.config.plugins.get(stem),
                )?;
                own
            }
            _ => PluginSettings::default(),
        };
        // The operator's word: not held to the ceilings.
        if let Some(over) = self.config.plugins.get(stem) {
            settings.overlay(over);
        }
        let mut limits = self.config.default_limits();
        settings.limits.apply_to(&mut limits);
        let origin = files
            .settings
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("[plugins.{stem}]"));
        limits
            .validate(&self.config.runtime, &origin)
            .map_err(|e| e.to_string())?;
        let outbound = OutboundPolicy::parse(
            settings
                .outbound
                .allowed_hosts
                .as_deref()
                .unwrap_or_default(),
        )
        .map_err(|e| format!("{origin}: outbound.{e}"))?;
        Ok(PluginSource {
            path: files.wasm.clone(),
            stem: stem.to_string(),
            wasm,
            settings,
            limits,
            outbound,
        })
    }
}

/// Admits what fits of `candidates` (in order), retrying the refused ones
/// while others get in; returns what never fit, with the last reason.
fn admit_all(
    next: &mut Snapshot,
    candidates: Vec<Arc<Plugin>>,
    doors: &FrontDoors,
) -> Vec<(Arc<Plugin>, String)> {
    let mut pending = candidates;
    loop {
        let mut refused = Vec::new();
        let before = pending.len();
        for plugin in pending.drain(..) {
            if let Err(reason) = admit(next, plugin.clone(), doors) {
                refused.push((plugin, reason.to_string()));
            }
        }
        if refused.is_empty() || refused.len() == before {
            return refused;
        }
        pending = refused.into_iter().map(|(p, _)| p).collect();
    }
}

/// Why a plugin's name could not be bound to its file.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "plugin name '{name}' of {file} is already used by {owner} (its owner since {since}); \
         the name's kv, cache and SQL data belong to {owner}. Rename the plugin, or, to \
         hand the name and its data to {file}, remove {owner} and run \
         `kiln plugins release {name}` (or DELETE /_kiln/v1/admin/plugin-names/{name}), \
         then touch {file}"
    )]
    Taken {
        name: String,
        file: String,
        owner: String,
        since: String,
    },
    #[error("cannot check who owns plugin name '{name}' in the engine's database: {source}")]
    Store {
        name: String,
        source: crate::store::DataError,
    },
}

/// Why a plugin was not admitted into the snapshot being built.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("plugin name '{name}' of {file} is already used by {other}; rename one of them")]
    NameInUse {
        name: String,
        file: String,
        other: String,
    },
    #[error(transparent)]
    FrontDoor(#[from] NotAdmitted),
}

/// Adds `plugin` to `next` if its name is free and every front door
/// admits it (its tools, its GraphQL fragment, its routes).
fn admit(next: &mut Snapshot, plugin: Arc<Plugin>, doors: &FrontDoors) -> Result<(), Refusal> {
    if let Some(other) = next
        .plugins
        .values()
        .find(|p| p.manifest.name == plugin.manifest.name)
    {
        return Err(Refusal::NameInUse {
            name: plugin.manifest.name.clone(),
            file: plugin.file_name(),
            other: other.file_name(),
        });
    }
    doors.admit(next, &plugin)?;
    next.plugins.insert(plugin.stem.clone(), plugin);
    Ok(())
}

fn record_failure(
    doors: &FrontDoors,
    statuses: &mut BTreeMap<String, PluginStatus>,
    stem: &str,
    files: &Found,
    error: String,
    attempted: Option<String>,
) -> bool {
    tracing::error!(file = %files.wasm.display(), error = %error, "plugin not loaded; the previous version (if any) keeps serving");
    let status = statuses
        .remove(stem)
        .unwrap_or_else(|| PluginStatus::never_loaded(file_name(&files.wasm), doors));
    let changed = status.last_error.as_ref() != Some(&error);
    statuses.insert(stem.to_string(), status.failed(error, attempted));
    changed
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Plugin files by stem: every `*.wasm` not starting with `.`, and a
/// `<stem>.toml` beside it if present.
fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, Found>> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") || !path.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            tracing::warn!(file = %path.display(), "skipping a plugin file whose name is not UTF-8");
            continue;
        };
        if stem.starts_with('.') {
            continue;
        }
        let settings = path.with_extension("toml");
        let settings = settings.is_file().then_some(settings);
        found.insert(
            stem.to_string(),
            Found {
                wasm: path.clone(),
                settings,
            },
        );
    }
    Ok(found)
}

fn read_files(files: &Found) -> Result<(Vec<u8>, Option<String>), String> {
    let meta = std::fs::metadata(&files.wasm).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_PLUGIN_FILE {
        return Err(format!(
            "file is {} bytes; the limit is {MAX_PLUGIN_FILE}",
            meta.len()
        ));
    }
    let wasm = std::fs::read(&files.wasm).map_err(|e| format!("cannot read: {e}"))?;
    let settings = match &files.settings {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    Ok((wasm, settings))
}

/// Watches the plugin directory until the returned guard is dropped.
pub fn watch(mut reloader: Reloader, debounce: Duration) -> anyhow::Result<WatchGuard> {
    let dir = reloader.config.plugins_dir.clone();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            // A full channel already holds a pending signal: nothing is lost.
            Ok(_) => {
                let _ = tx.try_send(());
            }
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot start the file watcher: {e}"))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait until the directory has been quiet for `debounce`.
            while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {}
            reloader.sync().await;
        }
    });
    Ok(WatchGuard {
        _watcher: watcher,
        task,
    })
}

pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
