//! Every loaded plugin's tools and prompts as one catalog: who serves each
//! name, and the listings clients get, built once per registry snapshot.
//! Names are global: a plugin whose tool or prompt name is taken is refused
//! at load, like a plugin whose route is taken.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::model;

use super::decl::{Declarations, Prompt, Tool};
use crate::runtime::Plugin;

/// What `/mcp` serves from one snapshot.
#[derive(Default)]
pub struct Catalog {
    tools: BTreeMap<String, Arc<Plugin>>,
    prompts: BTreeMap<String, Arc<Plugin>>,
    /// `tools/list` and `prompts/list`, sorted by name. Shared so that a
    /// session can tell whether a reload changed what it saw.
    pub tool_list: Arc<Vec<model::Tool>>,
    pub prompt_list: Arc<Vec<model::Prompt>>,
}

impl Catalog {
    /// The catalog of `plugins`. Conflicts were refused at admission, so a
    /// later plugin claiming a name would simply not be listed.
    pub fn build<'a>(plugins: impl IntoIterator<Item = &'a Arc<Plugin>>) -> Catalog {
        let mut catalog = Catalog::default();
        let mut tools = BTreeMap::new();
        let mut prompts = BTreeMap::new();
        for plugin in plugins {
            let Some(declarations) = super::door::declarations(plugin) else {
                continue;
            };
            for tool in &declarations.tools {
                if !catalog.tools.contains_key(&tool.name) {
                    catalog.tools.insert(tool.name.clone(), plugin.clone());
                    tools.insert(tool.name.clone(), listed_tool(tool));
                }
            }
            for prompt in &declarations.prompts {
                if !catalog.prompts.contains_key(&prompt.name) {
                    catalog.prompts.insert(prompt.name.clone(), plugin.clone());
                    prompts.insert(prompt.name.clone(), listed_prompt(prompt));
                }
            }
        }
        catalog.tool_list = Arc::new(tools.into_values().collect());
        catalog.prompt_list = Arc::new(prompts.into_values().collect());
        catalog
    }

    /// The plugin serving tool `name` and its declaration.
    pub fn tool(&self, name: &str) -> Option<(&Arc<Plugin>, &Tool)> {
        let plugin = self.tools.get(name)?;
        let tool = super::door::declarations(plugin)?.tool(name)?;
        Some((plugin, tool))
    }

    /// Every tool with its plugin, by name.
    pub fn tools(&self) -> impl Iterator<Item = (&Arc<Plugin>, &Tool)> {
        self.tools.keys().filter_map(|name| self.tool(name))
    }

    /// Every prompt with its plugin, by name.
    pub fn prompts(&self) -> impl Iterator<Item = (&Arc<Plugin>, &Prompt)> {
        self.prompts.keys().filter_map(|name| self.prompt(name))
    }

    /// The plugin serving prompt `name` and its declaration.
    pub fn prompt(&self, name: &str) -> Option<(&Arc<Plugin>, &Prompt)> {
        let plugin = self.prompts.get(name)?;
        let prompt = super::door::declarations(plugin)?.prompt(name)?;
        Some((plugin, prompt))
    }
}

/// Whether `candidate`'s tools and prompts fit beside `plugins`; the error
/// names both plugins.
pub fn check_conflicts<'a>(
    plugins: impl IntoIterator<Item = (&'a str, &'a Declarations)>,
    candidate: &str,
    declarations: &Declarations,
) -> Result<(), String> {
    for (other, theirs) in plugins {
        if let Some(tool) = declarations
            .tools
            .iter()
            .find(|t| theirs.tool(&t.name).is_some())
        {
            return Err(format!(
                "MCP tool '{}' of plugin '{candidate}' is already provided by plugin '{other}'",
                tool.name
            ));
        }
        if let Some(prompt) = declarations
            .prompts
            .iter()
            .find(|p| theirs.prompt(&p.name).is_some())
        {
            return Err(format!(
                "MCP prompt '{}' of plugin '{candidate}' is already provided by plugin '{other}'",
                prompt.name
            ));
        }
    }
    Ok(())
}

fn listed_tool(tool: &Tool) -> model::Tool {
    let mut listed = model::Tool::new_with_raw(
        tool.name.clone(),
        Some(tool.description.clone().into()),
        tool.input_schema.clone(),
    );
    if let Some(title) = &tool.title {
        listed = listed.with_title(title.clone());
    }
    if let Some(schema) = &tool.output_schema {
        listed = listed.with_raw_output_schema(schema.clone());
    }
    let a = &tool.annotations;
    if a.read_only.is_some()
        || a.destructive.is_some()
        || a.idempotent.is_some()
        || a.open_world.is_some()
    {
        let mut annotations = model::ToolAnnotations::new();
        annotations.read_only_hint = a.read_only;
        annotations.destructive_hint = a.destructive;
        annotations.idempotent_hint = a.idempotent;
        annotations.open_world_hint = a.open_world;
        listed = listed.with_annotations(annotations);
    }
    listed
}

fn listed_prompt(prompt: &Prompt) -> model::Prompt {
    let arguments = prompt
        .arguments
        .iter()
        .map(|a| {
            let mut argument = model::PromptArgument::new(a.name.clone()).with_required(a.required);
            if let Some(d) = &a.description {
                argument = argument.with_description(d.clone());
            }
            argument
        })
        .collect::<Vec<_>>();
    let mut listed = model::Prompt::new(
        prompt.name.clone(),
        prompt.description.clone(),
        (!arguments.is_empty()).then_some(arguments),
    );
    if let Some(title) = &prompt.title {
        listed = listed.with_title(title.clone());
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::decl::{RawPrompt, RawTool, check};

    fn declarations(tools: &[&str], prompts: &[&str]) -> Declarations {
        check(
            tools
                .iter()
                .map(|name| RawTool {
                    name: name.to_string(),
                    description: "d".into(),
                    input_schema: r#"{"type":"object"}"#.into(),
                    ..RawTool::default()
                })
                .collect(),
            prompts
                .iter()
                .map(|name| RawPrompt {
                    name: name.to_string(),
                    ..RawPrompt::default()
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_taken_tool_or_prompt_name_names_both_plugins() {
        let notes = declarations(&["notes.add", "notes.find"], &["summarise"]);
        let existing = [("notes", &notes)];
        let clash = declarations(&["other", "notes.find"], &[]);
        assert_eq!(
            check_conflicts(existing, "search", &clash).unwrap_err(),
            "MCP tool 'notes.find' of plugin 'search' is already provided by plugin 'notes'"
        );
        let clash = declarations(&[], &["summarise"]);
        assert_eq!(
            check_conflicts(existing, "search", &clash).unwrap_err(),
            "MCP prompt 'summarise' of plugin 'search' is already provided by plugin 'notes'"
        );
        let fine = declarations(&["search.run"], &["search"]);
        assert!(check_conflicts(existing, "search", &fine).is_ok());
    }
}
