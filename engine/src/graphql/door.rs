//! GraphQL as a front door: at load it asks a plugin for its SDL fragment
//! (`kiln:plugin/graphql.schema`) and checks it; at admission the fragment
//! must merge with everyone else's; the catalog is the merged schema.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::sdl::{Fragment, Kind, ROOT_TYPES};
use super::{SchemaInputs, assemble, fragment};
use crate::front_door::{FrontDoor, refused};
use crate::registry::Snapshot;
use crate::runtime::call::GRAPHQL;
use crate::runtime::{CallError, LoadError, Plugin};

/// The GraphQL front door, with what every schema is built with.
pub struct GraphqlDoor(pub SchemaInputs);

/// Why a plugin's GraphQL part was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum GraphqlLoadError {
    #[error("graphql.schema() failed: {0}")]
    Schema(CallError),
    #[error("invalid GraphQL SDL: {0}")]
    Sdl(String),
}

impl FrontDoor for GraphqlDoor {
    fn describe<'a>(&'a self, plugin: &'a mut Plugin) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let asked = plugin
                .ask(&GRAPHQL, async |graphql, store, instance| {
                    let guest = graphql.load(&mut *store, &instance)?;
                    guest.call_schema(store).await
                })
                .await;
            let Some(sdl) = asked else {
                return Ok(());
            };
            let sdl = sdl.map_err(|e| refused(GraphqlLoadError::Schema(e)))?;
            let fragment =
                super::sdl::parse(&sdl).map_err(|e| refused(GraphqlLoadError::Sdl(e)))?;
            if !fragment.types.is_empty() {
                plugin.parts.insert(fragment);
            }
            Ok(())
        })
    }

    fn admit(&self, next: &mut Snapshot, plugin: &Arc<Plugin>) -> Result<(), String> {
        if fragment(plugin).is_none() {
            return Ok(());
        }
        assemble(next.plugins.values().chain([plugin]), &self.0)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn finish(&self, next: &mut Snapshot, current: &Snapshot) {
        next.graphql = match assemble(next.plugins.values(), &self.0) {
            Ok(schema) => Some(Arc::new(schema)),
            Err(e) => {
                // Cannot happen: every plugin was admitted against this set.
                tracing::error!(error = %e, "the GraphQL schema does not build; keeping the previous one");
                current.graphql.clone()
            }
        };
    }

    fn summary(&self, plugin: Option<&Plugin>) -> Vec<(&'static str, Value)> {
        let fields = plugin.and_then(fragment).map(fields).unwrap_or_default();
        vec![("graphql_fields", json!(fields))]
    }
}

/// What the admin API shows of the GraphQL front door: the merged SDL
/// and, for every field, the plugin behind it and the `@auth` / `@price` /
/// `@topic` the host keeps for it.
pub fn admin_view(snapshot: &Snapshot) -> Value {
    match &snapshot.graphql {
        Some(g) => json!({ "sdl": g.schema.sdl(), "fields": g.fields }),
        None => json!({ "sdl": null, "fields": [] }),
    }
}

/// The fields a fragment adds to the schema's root and extended types, as
/// `Type.field`.
fn fields(fragment: &Fragment) -> Vec<String> {
    fragment
        .types
        .iter()
        .filter(|t| t.extend || ROOT_TYPES.contains(&t.name.as_str()))
        .flat_map(|t| match &t.kind {
            Kind::Object { fields, .. } => fields
                .iter()
                .map(|f| format!("{}.{}", t.name, f.name))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}
