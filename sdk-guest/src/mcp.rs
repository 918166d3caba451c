//! MCP tools and prompts. The plugin declares each tool with a JSON Schema
//! for its arguments; the host lists them to MCP clients at `/mcp`, checks
//! every call's arguments against the schema, and runs the tool's function.
//!
//! ```ignore
//! use kiln_sdk::mcp::{Mcp, Tool, ToolCall, ToolResult};
//! use serde_json::json;
//!
//! fn mcp() -> Mcp {
//!     Mcp::new().tool(
//!         Tool::new("add", "Adds two numbers.", add)
//!             .input(json!({
//!                 "type": "object",
//!                 "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
//!                 "required": ["a", "b"]
//!             }))
//!             .read_only(),
//!     )
//! }
//!
//! fn add(call: ToolCall) -> kiln_sdk::Result<ToolResult> {
//!     let (a, b): (f64, f64) = (call.arg("a")?, call.arg("b")?);
//!     Ok(ToolResult::text((a + b).to_string()))
//! }
//! ```
//!
//! A long call can report progress with [`progress`] and send log lines to
//! the client with [`notify`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bindings::exports::kiln::plugin::mcp as wit;
use crate::bindings::kiln::plugin::mcp_client;
use crate::{Error, Result};

pub use mcp_client::Level;

/// A tool's function: the call in, the result out. An `Err` becomes an
/// error result (`isError`) with its message.
pub type ToolFn = fn(ToolCall) -> Result<ToolResult>;
/// A prompt's function.
pub type PromptFn = fn(PromptCall) -> Result<PromptResult>;

/// The plugin's MCP tools and prompts.
#[derive(Default)]
pub struct Mcp {
    tools: Vec<Tool>,
    prompts: Vec<Prompt>,
}

impl Mcp {
    /// No tools or prompts: what [`Plugin::mcp`](crate::Plugin::mcp) returns by default.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.push(tool);
        self
    }

    pub fn prompt(mut self, prompt: Prompt) -> Self {
        self.prompts.push(prompt);
        self
    }

    pub(crate) fn find_tool(&self, name: &str) -> Option<ToolFn> {
        self.tools.iter().find(|t| t.name == name).map(|t| t.run)
    }

    pub(crate) fn find_prompt(&self, name: &str) -> Option<PromptFn> {
        self.prompts
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.render)
    }

    pub(crate) fn declared_tools(&self) -> Vec<wit::Tool> {
        self.tools.iter().map(Tool::declaration).collect()
    }

    pub(crate) fn declared_prompts(&self) -> Vec<wit::Prompt> {
        self.prompts.iter().map(Prompt::declaration).collect()
    }
}

/// One tool.
pub struct Tool {
    name: String,
    title: Option<String>,
    description: String,
    input: Value,
    output: Option<Value>,
    annotations: wit::ToolAnnotations,
    roles: Vec<String>,
    price_micros: u64,
    run: ToolFn,
}

impl Tool {
    /// A tool that takes no arguments until [`Tool::input`] says otherwise.
    pub fn new(name: &str, description: &str, run: ToolFn) -> Self {
        Tool {
            name: name.to_string(),
            title: None,
            description: description.to_string(),
            input: serde_json::json!({ "type": "object" }),
            output: None,
            annotations: wit::ToolAnnotations {
                read_only: None,
                destructive: None,
                idempotent: None,
                open_world: None,
            },
            roles: Vec::new(),
            price_micros: 0,
            run,
        }
    }

    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_string());
        self
    }

    /// The JSON Schema of the arguments (`"type": "object"` at the top).
    pub fn input(mut self, schema: Value) -> Self {
        self.input = schema;
        self
    }

    /// The JSON Schema of the structured result; the tool must then return
    /// one ([`ToolResult::json`]) and the host checks it.
    pub fn output(mut self, schema: Value) -> Self {
        self.output = Some(schema);
        self
    }

    /// The tool changes nothing.
    pub fn read_only(mut self) -> Self {
        self.annotations.read_only = Some(true);
        self
    }

    /// The tool may overwrite or delete data.
    pub fn destructive(mut self, destructive: bool) -> Self {
        self.annotations.destructive = Some(destructive);
        self
    }

    /// Repeating a call with the same arguments changes nothing more.
    pub fn idempotent(mut self) -> Self {
        self.annotations.idempotent = Some(true);
        self
    }

    /// The tool reaches outside the engine.
    pub fn open_world(mut self, open_world: bool) -> Self {
        self.annotations.open_world = Some(open_world);
        self
    }

    /// Roles of which a caller needs one (enforced by the identity layer).
    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Price per call in millionths of the billing unit.
    pub fn price_micros(mut self, micros: u64) -> Self {
        self.price_micros = micros;
        self
    }

    fn declaration(&self) -> wit::Tool {
        wit::Tool {
            name: self.name.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            input_schema: self.input.to_string(),
            output_schema: self.output.as_ref().map(Value::to_string),
            annotations: self.annotations,
            access: wit::Access {
                roles: self.roles.clone(),
                price_micros: self.price_micros,
            },
        }
    }
}

/// One prompt template.
pub struct Prompt {
    name: String,
    title: Option<String>,
    description: Option<String>,
    arguments: Vec<wit::PromptArgument>,
    roles: Vec<String>,
    price_micros: u64,
    render: PromptFn,
}

impl Prompt {
    pub fn new(name: &str, description: &str, render: PromptFn) -> Self {
        Prompt {
            name: name.to_string(),
            title: None,
            description: (!description.is_empty()).then(|| description.to_string()),
            arguments: Vec::new(),
            roles: Vec::new(),
            price_micros: 0,
            render,
        }
    }

    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_string());
        self
    }

    /// An argument the client must give.
    pub fn argument(self, name: &str, description: &str) -> Self {
        self.arg(name, description, true)
    }

    /// An argument the client may leave out.
    pub fn optional_argument(self, name: &str, description: &str) -> Self {
        self.arg(name, description, false)
    }

    fn arg(mut self, name: &str, description: &str, required: bool) -> Self {
        self.arguments.push(wit::PromptArgument {
            name: name.to_string(),
            description: (!description.is_empty()).then(|| description.to_string()),
            required,
        });
        self
    }

    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    fn declaration(&self) -> wit::Prompt {
        wit::Prompt {
            name: self.name.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            arguments: self.arguments.clone(),
            access: wit::Access {
                roles: self.roles.clone(),
                price_micros: self.price_micros,
            },
        }
    }
}

/// One tool call. The arguments passed the tool's input schema.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
    pub request_id: String,
    /// The authenticated principal, when there is one.
    pub principal: Option<Value>,
}

impl ToolCall {
    /// A required argument; a missing or mistyped one is a `bad-request`.
    pub fn arg<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        crate::args::required(&self.arguments, name)
    }

    /// An optional argument: `None` when absent or null.
    pub fn arg_opt<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        crate::args::optional(&self.arguments, name)
    }

    /// All arguments as one typed value.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.arguments.clone())
            .map_err(|e| Error::bad_request(format!("arguments: {e}")))
    }
}

/// One block of a result.
pub type Content = wit::Content;

/// Content constructors.
pub mod content {
    use super::wit;

    pub fn text(text: impl Into<String>) -> wit::Content {
        wit::Content::Text(text.into())
    }

    pub fn image(data: Vec<u8>, mime_type: &str) -> wit::Content {
        wit::Content::Image(wit::Media {
            data,
            mime_type: mime_type.to_string(),
        })
    }

    pub fn audio(data: Vec<u8>, mime_type: &str) -> wit::Content {
        wit::Content::Audio(wit::Media {
            data,
            mime_type: mime_type.to_string(),
        })
    }

    /// An embedded text resource.
    pub fn resource_text(
        uri: &str,
        mime_type: Option<&str>,
        text: impl Into<String>,
    ) -> wit::Content {
        wit::Content::Embedded(wit::EmbeddedResource {
            uri: uri.to_string(),
            mime_type: mime_type.map(str::to_string),
            body: wit::ResourceBody::Text(text.into()),
        })
    }

    /// An embedded binary resource.
    pub fn resource_blob(uri: &str, mime_type: Option<&str>, data: Vec<u8>) -> wit::Content {
        wit::Content::Embedded(wit::EmbeddedResource {
            uri: uri.to_string(),
            mime_type: mime_type.map(str::to_string),
            body: wit::ResourceBody::Blob(data),
        })
    }

    /// A link to a resource the client may fetch.
    pub fn link(uri: &str, name: &str) -> wit::Content {
        wit::Content::Link(wit::ResourceLink {
            uri: uri.to_string(),
            name: name.to_string(),
            description: None,
            mime_type: None,
        })
    }
}

/// What a tool returns.
#[derive(Debug, Clone, Default)]
pub struct ToolResult {
    pub content: Vec<Content>,
    pub structured: Option<Value>,
    pub is_error: bool,
}

impl ToolResult {
    /// One text block.
    pub fn text(text: impl Into<String>) -> Self {
        ToolResult {
            content: vec![content::text(text)],
            ..Self::default()
        }
    }

    /// Structured content (a JSON object); the host adds its JSON text as a
    /// text block for clients that predate structured content.
    pub fn json(value: &impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(value)?;
        if !value.is_object() {
            return Err(Error::internal("structured content must be a JSON object"));
        }
        Ok(ToolResult {
            structured: Some(value),
            ..Self::default()
        })
    }

    /// The tool ran and failed in a way the model should read (and may fix).
    pub fn error(message: impl Into<String>) -> Self {
        ToolResult {
            content: vec![content::text(message)],
            is_error: true,
            ..Self::default()
        }
    }

    /// Adds a content block.
    pub fn with(mut self, content: Content) -> Self {
        self.content.push(content);
        self
    }

    fn into_wit(self) -> Result<wit::ToolResult> {
        Ok(wit::ToolResult {
            content: self.content,
            structured: self
                .structured
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            is_error: self.is_error,
        })
    }
}

/// One prompt request. Every required argument is present.
#[derive(Debug, Clone)]
pub struct PromptCall {
    pub name: String,
    pub arguments: BTreeMap<String, String>,
    pub request_id: String,
    pub principal: Option<Value>,
}

impl PromptCall {
    /// An argument's value; a missing one is a `bad-request`.
    pub fn arg(&self, name: &str) -> Result<&str> {
        self.arguments
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::bad_request(format!("argument '{name}' is missing")))
    }

    pub fn arg_opt(&self, name: &str) -> Option<&str> {
        self.arguments.get(name).map(String::as_str)
    }
}

/// A rendered prompt: messages for the model.
#[derive(Debug, Clone, Default)]
pub struct PromptResult {
    pub description: Option<String>,
    pub messages: Vec<wit::PromptMessage>,
}

impl PromptResult {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// A user message with text.
    pub fn user(self, text: impl Into<String>) -> Self {
        self.message(wit::PromptRole::User, content::text(text))
    }

    /// An assistant message with text.
    pub fn assistant(self, text: impl Into<String>) -> Self {
        self.message(wit::PromptRole::Assistant, content::text(text))
    }

    /// A message with any content (an image, an embedded resource).
    pub fn message(mut self, role: wit::PromptRole, content: Content) -> Self {
        self.messages.push(wit::PromptMessage { role, content });
        self
    }
}

pub use wit::PromptRole;

/// Reports progress of the running tool call to its client (when the
/// client asked for progress). `progress` should grow with every call.
pub fn progress(progress: f64, total: Option<f64>, message: Option<&str>) {
    mcp_client::report_progress(progress, total, message);
}

/// Sends a log message to the client of the running tool call.
pub fn notify(level: Level, message: &str) {
    mcp_client::notify(level, message);
}

#[doc(hidden)]
pub mod __export {
    //! Glue for [`export_plugin!`](crate::export_plugin).
    use super::*;
    use crate::Plugin;
    use crate::bindings::kiln::plugin::types;

    pub fn tools<P: Plugin>() -> Vec<wit::Tool> {
        P::mcp().declared_tools()
    }

    pub fn prompts<P: Plugin>() -> Vec<wit::Prompt> {
        P::mcp().declared_prompts()
    }

    fn principal(text: Option<String>) -> Result<Option<Value>> {
        text.map(|p| {
            serde_json::from_str(&p).map_err(|e| {
                Error::internal(format!("the host sent a principal that is not JSON: {e}"))
            })
        })
        .transpose()
    }

    pub fn call_tool<P: Plugin>(
        name: String,
        arguments: String,
        context: wit::CallContext,
    ) -> Result<wit::ToolResult, types::Error> {
        let Some(run) = P::mcp().find_tool(&name) else {
            return Err(Error::not_found(format!("this plugin has no tool named '{name}'")).into());
        };
        let arguments = serde_json::from_str(&arguments).map_err(|e| {
            Error::internal(format!("the host sent arguments that are not JSON: {e}"))
        })?;
        let call = ToolCall {
            name,
            arguments,
            request_id: context.request_id,
            principal: principal(context.principal)?,
        };
        run(call).and_then(ToolResult::into_wit).map_err(Into::into)
    }

    pub fn get_prompt<P: Plugin>(
        name: String,
        arguments: Vec<(String, String)>,
        context: wit::CallContext,
    ) -> Result<wit::PromptResult, types::Error> {
        let Some(render) = P::mcp().find_prompt(&name) else {
            return Err(
                Error::not_found(format!("this plugin has no prompt named '{name}'")).into(),
            );
        };
        let call = PromptCall {
            name,
            arguments: arguments.into_iter().collect(),
            request_id: context.request_id,
            principal: principal(context.principal)?,
        };
        let result = render(call)?;
        Ok(wit::PromptResult {
            description: result.description,
            messages: result.messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nothing(_: ToolCall) -> Result<ToolResult> {
        Ok(ToolResult::text("ok"))
    }

    fn hello(call: PromptCall) -> Result<PromptResult> {
        Ok(PromptResult::new().user(format!("hi {}", call.arg("who")?)))
    }

    #[test]
    fn declarations_carry_schemas_annotations_and_access() {
        let mcp = Mcp::new()
            .tool(
                Tool::new("t", "does t", nothing)
                    .title("T")
                    .input(
                        json!({ "type": "object", "properties": { "n": { "type": "integer" } } }),
                    )
                    .output(json!({ "type": "object" }))
                    .read_only()
                    .roles(&["admin"])
                    .price_micros(5),
            )
            .prompt(Prompt::new("p", "says hi", hello).argument("who", "whom"));
        let tools = mcp.declared_tools();
        assert_eq!(tools[0].name, "t");
        assert_eq!(tools[0].annotations.read_only, Some(true));
        assert_eq!(tools[0].access.roles, vec!["admin".to_string()]);
        assert_eq!(tools[0].access.price_micros, 5);
        let schema: Value = serde_json::from_str(&tools[0].input_schema).unwrap();
        assert_eq!(schema["properties"]["n"]["type"], "integer");
        assert_eq!(
            tools[0].output_schema.as_deref(),
            Some(r#"{"type":"object"}"#)
        );
        let prompts = mcp.declared_prompts();
        assert!(prompts[0].arguments[0].required);
        assert!(mcp.find_tool("t").is_some());
        assert!(mcp.find_tool("u").is_none());
        assert!(mcp.find_prompt("p").is_some());
    }

    #[test]
    fn tool_calls_decode_arguments_or_say_which_one_is_wrong() {
        let call = ToolCall {
            name: "t".into(),
            arguments: json!({ "n": 3, "s": "x" }),
            request_id: "r".into(),
            principal: None,
        };
        assert_eq!(call.arg::<u32>("n").unwrap(), 3);
        assert_eq!(call.arg_opt::<u32>("absent").unwrap(), None);
        assert!(
            call.arg::<u32>("s")
                .unwrap_err()
                .message
                .starts_with("argument 's'")
        );
        #[derive(serde::Deserialize)]
        struct Args {
            n: u32,
        }
        assert_eq!(call.args::<Args>().unwrap().n, 3);
    }

    #[test]
    fn structured_results_must_be_objects() {
        assert!(ToolResult::json(&json!({ "a": 1 })).is_ok());
        assert!(ToolResult::json(&json!([1])).is_err());
        let r = ToolResult::error("nope");
        assert!(r.is_error);
    }
}
