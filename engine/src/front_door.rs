//! The seam every front door plugs into. HTTP routes, GraphQL, MCP and auth
//! providers are each one unit that owns, for its kind of plugin export:
//!
//! - what it asks a plugin at load ([`FrontDoor::describe`]), kept in the
//!   plugin's [`Parts`](crate::runtime::plugin::Parts);
//! - whether a plugin fits beside the others ([`FrontDoor::admit`]) and,
//!   for the route table, its place in the snapshot being built;
//! - its catalog in the [`Snapshot`], built once admission is over
//!   ([`FrontDoor::finish`]);
//! - what the admin API's plugin list shows of it ([`FrontDoor::summary`]).
//!
//! The reload pass (`watcher.rs`) loops over [`FrontDoors`] and never
//! branches on a kind. Adding a front door is its own folder plus one line
//! in [`FrontDoors::new`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::registry::Snapshot;
use crate::runtime::{LoadError, Plugin};

pub trait FrontDoor: Send + Sync + 'static {
    /// Asks a freshly loaded plugin what it offers through this front door
    /// and keeps the checked answer in `plugin.parts`; an error refuses the
    /// plugin. A plugin that offers nothing here is left as it is.
    fn describe<'a>(&'a self, plugin: &'a mut Plugin) -> BoxFuture<'a, Result<(), LoadError>>;

    /// Whether `plugin` fits beside what `next` holds so far; the reason if
    /// not (naming both plugins). Front doors are asked in order and only
    /// the last may change `next` here (the route table, whose insertion is
    /// all-or-nothing), so a refusal never leaves half a plugin behind.
    fn admit(&self, next: &mut Snapshot, plugin: &Arc<Plugin>) -> Result<(), String>;

    /// Builds this front door's catalog in `next` from every admitted
    /// plugin; `current` is the snapshot being replaced.
    fn finish(&self, _next: &mut Snapshot, _current: &Snapshot) {}

    /// What the admin API's plugin list shows of `plugin` here (key, value);
    /// with `None`, the same keys, empty, for a file that serves nothing.
    fn summary(&self, plugin: Option<&Plugin>) -> Vec<(&'static str, Value)>;
}

/// Every front door, in admission order.
#[derive(Clone)]
pub struct FrontDoors(Arc<[Arc<dyn FrontDoor>]>);

impl FrontDoors {
    /// The engine's front doors. The route table goes last: it is the one
    /// that changes the snapshot in `admit`.
    pub fn new(graphql: crate::graphql::SchemaInputs) -> Self {
        FrontDoors(Arc::from([
            Arc::new(crate::identity::providers::AuthDoor) as Arc<dyn FrontDoor>,
            Arc::new(crate::mcp::door::McpDoor),
            Arc::new(crate::graphql::GraphqlDoor(graphql)),
            Arc::new(crate::http::dispatch::RoutesDoor),
        ]))
    }

    /// Asks `plugin` what it offers through every front door.
    pub async fn describe(&self, plugin: &mut Plugin) -> Result<(), LoadError> {
        for door in self.0.iter() {
            door.describe(plugin).await?;
        }
        Ok(())
    }

    /// Admits `plugin` through every front door, or none.
    pub fn admit(&self, next: &mut Snapshot, plugin: &Arc<Plugin>) -> Result<(), NotAdmitted> {
        self.0.iter().try_for_each(|door| {
            door.admit(next, plugin).map_err(|reason| NotAdmitted {
                plugin: plugin.manifest.name.clone(),
                file: plugin.file_name(),
                reason,
            })
        })
    }

    pub fn finish(&self, next: &mut Snapshot, current: &Snapshot) {
        for door in self.0.iter() {
            door.finish(next, current);
        }
    }

    pub fn summary(&self, plugin: Option<&Plugin>) -> serde_json::Map<String, Value> {
        self.0
            .iter()
            .flat_map(|door| door.summary(plugin))
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }
}

/// A front door's refusal at admission: what did not fit, and why (the
/// reason names the other plugin).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{plugin} ({file}): {reason}")]
pub struct NotAdmitted {
    pub plugin: String,
    pub file: String,
    pub reason: String,
}

/// A front door's refusal at load, for [`LoadError::Part`].
pub fn refused(error: impl std::error::Error + Send + Sync + 'static) -> LoadError {
    LoadError::Part(Box::new(error))
}
