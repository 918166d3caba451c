//! Everything loaded, as one immutable [`Snapshot`] swapped atomically on
//! reload: a request takes the snapshot once and finishes on it, so a swap
//! never disturbs a call in flight. Beside it, the status of every plugin
//! file (also the failed ones) for the admin API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Limits;
use crate::front_door::FrontDoors;
use crate::routes::RouteTable;
use crate::runtime::{CacheOutcome, Plugin};

#[derive(Default)]
pub struct Snapshot {
    /// Serving plugins by file stem.
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    pub routes: RouteTable<Arc<Plugin>>,
    /// The schema merged from every plugin's SDL; none only before the
    /// first load pass.
    pub graphql: Option<Arc<crate::graphql::GraphqlSchema>>,
    /// Every plugin's MCP tools and prompts.
    pub mcp: Arc<crate::mcp::Catalog>,
}

/// Where a plugin file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// The current file is serving.
    Active,
    /// The current file was refused; the previous good version still serves.
    ServingPrevious,
    /// The current file was refused and nothing serves from it.
    Failed,
    /// The file is being compiled and loaded; nothing served from it yet.
    Loading,
}

/// A load in progress, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Loading {
    /// SHA-256 of the file being loaded.
    pub attempted_hash: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Unix seconds when the load started.
    pub since: u64,
}

/// One plugin file, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub file: String,
    pub state: PluginState,
    /// From the serving version's manifest.
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// SHA-256 of the serving wasm.
    pub hash: Option<String>,
    /// SHA-256 of the file on disk when it differs from the serving one.
    pub attempted_hash: Option<String>,
    /// What each front door shows of the serving version (`routes`,
    /// `graphql_fields`, `mcp_tools`, `mcp_prompts`).
    #[serde(flatten)]
    pub parts: serde_json::Map<String, serde_json::Value>,
    pub limits: Option<Limits>,
    pub compile_cache: Option<CacheOutcome>,
    /// Unix seconds when the serving version was loaded.
    pub loaded_at: Option<u64>,
    pub last_error: Option<String>,
    /// Unix seconds of the last failed attempt.
    pub last_error_at: Option<u64>,
    /// A newer file being loaded right now (a big component takes seconds
    /// to compile); the serving version, if any, serves meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loading: Option<Loading>,
}

impl PluginStatus {
    pub fn serving(plugin: &Plugin, doors: &FrontDoors) -> Self {
        PluginStatus {
            file: plugin.file_name(),
            state: PluginState::Active,
            name: Some(plugin.manifest.name.clone()),
            version: Some(plugin.manifest.version.clone()),
            description: plugin.manifest.description.clone(),
            hash: Some(plugin.hash.clone()),
            attempted_hash: None,
            parts: doors.summary(Some(plugin)),
            limits: Some(plugin.limits.clone()),
            compile_cache: Some(plugin.cache),
            loaded_at: Some(now()),
            last_error: None,
            last_error_at: None,
            loading: None,
        }
    }

    /// `self` while a file hashed `attempted` of `bytes` bytes loads.
    pub fn start_loading(mut self, attempted: String, bytes: u64) -> Self {
        if self.hash.is_none() {
            self.state = PluginState::Loading;
        }
        self.loading = Some(Loading {
            attempted_hash: attempted,
            bytes,
            since: now(),
        });
        self
    }

    /// `self` after a failed attempt with a file hashed `attempted`.
    pub fn failed(mut self, error: String, attempted: Option<String>) -> Self {
        self.state = if self.hash.is_some() {
            PluginState::ServingPrevious
        } else {
            PluginState::Failed
        };
        self.attempted_hash = attempted.filter(|a| self.hash.as_ref() != Some(a));
        self.last_error = Some(error);
        self.last_error_at = Some(now());
        self.loading = None;
        self
    }

    pub fn never_loaded(file: String, doors: &FrontDoors) -> Self {
        PluginStatus {
            file,
            state: PluginState::Failed,
            name: None,
            version: None,
            description: None,
            hash: None,
            attempted_hash: None,
            parts: doors.summary(None),
            limits: None,
            compile_cache: None,
            loaded_at: None,
            last_error: None,
            last_error_at: None,
            loading: None,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Registry {
    snapshot: ArcSwap<Snapshot>,
    statuses: Mutex<BTreeMap<String, PluginStatus>>,
    /// Counts published snapshots, for whoever follows changes (MCP
    /// sessions that announce list changes).
    published: tokio::sync::watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            snapshot: ArcSwap::default(),
            statuses: Mutex::default(),
            published: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes on every snapshot published from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The snapshot to serve one request from.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot and the statuses that go with it.
    pub fn publish(&self, snapshot: Snapshot, statuses: BTreeMap<String, PluginStatus>) {
        // Statuses first: a reader who sees the new snapshot finds them current.
        *self.statuses.lock().unwrap_or_else(|p| p.into_inner()) = statuses;
        self.snapshot.store(Arc::new(snapshot));
        self.published.send_modify(|n| *n += 1);
    }

    /// Shows one file's status at once, before the next snapshot: a load
    /// that takes seconds is visible while it runs.
    pub fn set_status(&self, stem: &str, status: PluginStatus) {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stem.to_string(), status);
    }

    pub fn statuses(&self) -> BTreeMap<String, PluginStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
