//! MCP as a front door: at load it asks a plugin for its tools and prompts
//! (`kiln:plugin/mcp.tools` / `prompts`) and checks them; at admission no
//! name may be another plugin's; the catalog is every plugin's tools and
//! prompts.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::catalog::{Catalog, check_conflicts};
use super::decl::Declarations;
use crate::front_door::{FrontDoor, refused};
use crate::registry::Snapshot;
use crate::runtime::bindings::mcp;
use crate::runtime::call::MCP;
use crate::runtime::{CallError, LoadError, Plugin};

/// The MCP front door.
pub struct McpDoor;

/// Why a plugin's MCP part was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum McpLoadError {
    #[error("mcp.tools()/prompts() failed: {0}")]
    Describe(CallError),
    #[error("invalid MCP declarations: {0}")]
    Invalid(String),
}

/// The plugin's checked MCP tools and prompts, when it declares any.
pub fn declarations(plugin: &Plugin) -> Option<&Declarations> {
    plugin.parts.get::<Declarations>()
}

impl FrontDoor for McpDoor {
    fn describe<'a>(&'a self, plugin: &'a mut Plugin) -> BoxFuture<'a, Result<(), LoadError>> {
        Box::pin(async move {
            let asked = plugin
                .ask(&MCP, async |mcp, store, instance| {
                    let guest = mcp.load(&mut *store, &instance)?;
                    let tools = guest.call_tools(&mut *store).await?;
                    let prompts = guest.call_prompts(store).await?;
                    Ok((tools, prompts))
                })
                .await;
            let Some(asked) = asked else {
                return Ok(());
            };
            let (tools, prompts) = asked.map_err(|e| refused(McpLoadError::Describe(e)))?;
            let declarations = super::decl::check(
                tools.into_iter().map(raw_tool).collect(),
                prompts.into_iter().map(raw_prompt).collect(),
            )
            .map_err(|e| refused(McpLoadError::Invalid(e)))?;
            if !declarations.is_empty() {
                plugin.parts.insert(declarations);
            }
            Ok(())
        })
    }

    fn admit(&self, next: &mut Snapshot, plugin: &Arc<Plugin>) -> Result<(), String> {
        let Some(ours) = declarations(plugin) else {
            return Ok(());
        };
        check_conflicts(
            next.plugins
                .values()
                .filter_map(|p| Some((p.manifest.name.as_str(), declarations(p)?))),
            &plugin.manifest.name,
            ours,
        )
    }

    fn finish(&self, next: &mut Snapshot, _current: &Snapshot) {
        next.mcp = Arc::new(Catalog::build(next.plugins.values()));
    }

    fn summary(&self, plugin: Option<&Plugin>) -> Vec<(&'static str, Value)> {
        let declared = plugin.and_then(declarations);
        let tools: Vec<&str> = declared
            .iter()
            .flat_map(|d| d.tools.iter().map(|t| t.name.as_str()))
            .collect();
        let prompts: Vec<&str> = declared
            .iter()
            .flat_map(|d| d.prompts.iter().map(|p| p.name.as_str()))
            .collect();
        vec![("mcp_tools", json!(tools)), ("mcp_prompts", json!(prompts))]
    }
}

/// What the admin API shows of the MCP front door: every tool and prompt,
/// the plugin behind it, its schemas and annotations, the access rule and
/// price the host keeps for it, and the sessions open now.
pub fn admin_view(snapshot: &Snapshot, sessions: Option<usize>) -> Value {
    let tools: Vec<_> = snapshot
        .mcp
        .tools()
        .map(|(plugin, tool)| {
            json!({
                "name": tool.name,
                "plugin": plugin.manifest.name,
                "title": tool.title,
                "description": tool.description,
                "input_schema": tool.input_schema,
                "output_schema": tool.output_schema,
                "annotations": tool.annotations,
                "access": tool.access,
            })
        })
        .collect();
    let prompts: Vec<_> = snapshot
        .mcp
        .prompts()
        .map(|(plugin, prompt)| {
            json!({
                "name": prompt.name,
                "plugin": plugin.manifest.name,
                "title": prompt.title,
                "description": prompt.description,
                "arguments": prompt.arguments,
                "access": prompt.access,
            })
        })
        .collect();
    json!({ "tools": tools, "prompts": prompts, "sessions": sessions })
}

fn raw_tool(t: mcp::Tool) -> crate::mcp::decl::RawTool {
    use crate::mcp::decl::{Access, Annotations, RawTool};
    RawTool {
        name: t.name,
        title: t.title,
        description: t.description,
        input_schema: t.input_schema,
        output_schema: t.output_schema,
        annotations: Annotations {
            read_only: t.annotations.read_only,
            destructive: t.annotations.destructive,
            idempotent: t.annotations.idempotent,
            open_world: t.annotations.open_world,
        },
        access: Access {
            roles: t.access.roles,
            price_micros: t.access.price_micros,
        },
    }
}

fn raw_prompt(p: mcp::Prompt) -> crate::mcp::decl::RawPrompt {
    use crate::mcp::decl::{Access, PromptArgument, RawPrompt};
    RawPrompt {
        name: p.name,
        title: p.title,
        description: p.description,
        arguments: p
            .arguments
            .into_iter()
            .map(|a| PromptArgument {
                name: a.name,
                description: a.description,
                required: a.required,
            })
            .collect(),
        access: Access {
            roles: p.access.roles,
            price_micros: p.access.price_micros,
        },
    }
}
