//! One plugin's MCP declarations, checked. Pure functions over what the
//! guest returned from `mcp.tools()` and `mcp.prompts()`: the guest is
//! untrusted, so every field is validated, schemas are compiled once here,
//! and every refusal names the tool or prompt and the field.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

const MAX_TOOLS: usize = 256;
const MAX_PROMPTS: usize = 256;
const MAX_NAME: usize = 128;
const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 16 * 1024;
const MAX_SCHEMA: usize = 64 * 1024;
const MAX_ARGUMENTS: usize = 64;
const MAX_ROLES: usize = 32;
const MAX_ROLE: usize = 64;

/// A tool as the guest declared it.
#[derive(Debug, Clone, Default)]
pub struct RawTool {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: String,
    pub output_schema: Option<String>,
    pub annotations: Annotations,
    pub access: Access,
}

/// A prompt as the guest declared it.
#[derive(Debug, Clone, Default)]
pub struct RawPrompt {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub arguments: Vec<PromptArgument>,
    pub access: Access,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Annotations {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// Who may call and what a call costs; kept for the identity and billing
/// layers, shown by the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    pub roles: Vec<String>,
    pub price_micros: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PromptArgument {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
}

/// A JSON Schema as declared, shared with the listings clients get.
pub type Schema = Arc<Map<String, Value>>;

/// A checked tool with its compiled schemas.
#[derive(Clone)]
pub struct Tool {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: Schema,
    pub output_schema: Option<Schema>,
    pub annotations: Annotations,
    pub access: Access,
    pub input: Arc<jsonschema::Validator>,
    pub output: Option<Arc<jsonschema::Validator>>,
}

/// A checked prompt.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub arguments: Vec<PromptArgument>,
    pub access: Access,
}

/// Everything one plugin serves over MCP.
#[derive(Clone, Default)]
pub struct Declarations {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
}

impl Declarations {
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.prompts.is_empty()
    }

    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    pub fn prompt(&self, name: &str) -> Option<&Prompt> {
        self.prompts.iter().find(|p| p.name == name)
    }
}

/// Checks what a plugin declared. The error names the tool or prompt.
pub fn check(tools: Vec<RawTool>, prompts: Vec<RawPrompt>) -> Result<Declarations, String> {
    if tools.len() > MAX_TOOLS {
        return Err(format!(
            "declares {} tools; at most {MAX_TOOLS} are allowed",
            tools.len()
        ));
    }
    if prompts.len() > MAX_PROMPTS {
        return Err(format!(
            "declares {} prompts; at most {MAX_PROMPTS} are allowed",
            prompts.len()
        ));
    }
    let mut names = HashSet::new();
    let mut checked_tools = Vec::with_capacity(tools.len());
    for raw in tools {
        let tool = check_tool(raw)?;
        if !names.insert(tool.name.clone()) {
            return Err(format!("declares tool '{}' twice", tool.name));
        }
        checked_tools.push(tool);
    }
    let mut names = HashSet::new();
    let mut checked_prompts = Vec::with_capacity(prompts.len());
    for raw in prompts {
        let prompt = check_prompt(raw)?;
        if !names.insert(prompt.name.clone()) {
            return Err(format!("declares prompt '{}' twice", prompt.name));
        }
        checked_prompts.push(prompt);
    }
    Ok(Declarations {
        tools: checked_tools,
        prompts: checked_prompts,
    })
}

/// MCP's rule for tool names (and ours for prompts): 1-128 characters of
/// ASCII letters, digits, `_`, `-` and `.`.
fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "{kind} name {:?} must be 1-{MAX_NAME} characters long",
            cut(name)
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{kind} name {name:?} contains {c:?}; use only letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            text.len()
        ));
    }
    Ok(())
}

fn check_access(what: &str, access: &Access) -> Result<(), String> {
    if access.roles.len() > MAX_ROLES {
        return Err(format!("{what}: at most {MAX_ROLES} roles are allowed"));
    }
    if let Some(role) = access
        .roles
        .iter()
        .find(|r| r.is_empty() || r.len() > MAX_ROLE || r.chars().any(char::is_whitespace))
    {
        return Err(format!(
            "{what}: role {:?} must be 1-{MAX_ROLE} characters without spaces",
            cut(role)
        ));
    }
    Ok(())
}

fn check_tool(raw: RawTool) -> Result<Tool, String> {
    check_name("tool", &raw.name)?;
    let what = format!("tool '{}'", raw.name);
    if let Some(title) = &raw.title {
        check_text(&format!("{what}: title"), title, MAX_TITLE)?;
    }
    if raw.description.trim().is_empty() {
        return Err(format!(
            "{what}: description is empty; models choose tools by their description"
        ));
    }
    check_text(
        &format!("{what}: description"),
        &raw.description,
        MAX_DESCRIPTION,
    )?;
    check_access(&what, &raw.access)?;
    let (input_schema, input) = compile(&format!("{what}: input schema"), &raw.input_schema)?;
    let (output_schema, output) = match &raw.output_schema {
        Some(text) => {
            let (schema, validator) = compile(&format!("{what}: output schema"), text)?;
            (Some(schema), Some(validator))
        }
        None => (None, None),
    };
    Ok(Tool {
        name: raw.name,
        title: raw.title,
        description: raw.description,
        input_schema,
        output_schema,
        annotations: raw.annotations,
        access: raw.access,
        input,
        output,
    })
}

/// Parses and compiles a tool schema: a JSON object describing an object
/// (MCP requires `"type": "object"` at the top), with only local `$ref`s.
fn compile(what: &str, text: &str) -> Result<(Schema, Arc<jsonschema::Validator>), String> {
    check_text(what, text, MAX_SCHEMA)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!("{what} must be a JSON object"));
    };
    if map.get("type") != Some(&Value::String("object".into())) {
        return Err(format!(
            "{what} must have \"type\": \"object\" at the top level (tool arguments and \
             structured results are JSON objects)"
        ));
    }
    let validator = jsonschema::validator_for(&Value::Object(map.clone()))
        .map_err(|e| format!("{what} is not usable: {e}"))?;
    Ok((Arc::new(map), Arc::new(validator)))
}

fn check_prompt(raw: RawPrompt) -> Result<Prompt, String> {
    check_name("prompt", &raw.name)?;
    let what = format!("prompt '{}'", raw.name);
    if let Some(title) = &raw.title {
        check_text(&format!("{what}: title"), title, MAX_TITLE)?;
    }
    if let Some(description) = &raw.description {
        check_text(
            &format!("{what}: description"),
            description,
            MAX_DESCRIPTION,
        )?;
    }
    check_access(&what, &raw.access)?;
    if raw.arguments.len() > MAX_ARGUMENTS {
        return Err(format!(
            "{what}: at most {MAX_ARGUMENTS} arguments are allowed"
        ));
    }
    let mut seen = HashSet::new();
    for argument in &raw.arguments {
        check_name(&format!("{what}: argument"), &argument.name)?;
        if !seen.insert(argument.name.as_str()) {
            return Err(format!("{what}: argument '{}' twice", argument.name));
        }
        if let Some(description) = &argument.description {
            check_text(
                &format!("{what}: argument '{}': description", argument.name),
                description,
                MAX_DESCRIPTION,
            )?;
        }
    }
    Ok(Prompt {
        name: raw.name,
        title: raw.title,
        description: raw.description,
        arguments: raw.arguments,
        access: raw.access,
    })
}

/// Why `arguments` do not fit `tool`'s input schema, naming each bad field
/// by its JSON pointer; none when they fit.
pub fn argument_errors(tool: &Tool, arguments: &Value) -> Option<String> {
    schema_errors(&tool.input, arguments)
}

/// Why a plugin's structured result does not fit the tool's output schema.
pub fn output_errors(tool: &Tool, structured: &Value) -> Option<String> {
    tool.output
        .as_ref()
        .and_then(|v| schema_errors(v, structured))
}

fn schema_errors(validator: &jsonschema::Validator, value: &Value) -> Option<String> {
    const SHOWN: usize = 5;
    let mut errors: Vec<String> = Vec::new();
    let mut more = 0;
    for error in validator.iter_errors(value) {
        if errors.len() == SHOWN {
            more += 1;
            continue;
        }
        let at = error.instance_path().to_string();
        let at = if at.is_empty() { "(root)".into() } else { at };
        errors.push(format!("{at}: {}", cut_owned(error.to_string())));
    }
    if errors.is_empty() {
        return None;
    }
    if more > 0 {
        errors.push(format!("and {more} more"));
    }
    Some(errors.join("; "))
}

fn cut(text: &str) -> &str {
    crate::text::cut(text, 80)
}

fn cut_owned(text: String) -> String {
    if text.len() <= 300 {
        text
    } else {
        format!("{}…", crate::text::cut(&text, 300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, schema: Value) -> RawTool {
        RawTool {
            name: name.into(),
            description: "does a thing".into(),
            input_schema: schema.to_string(),
            ..RawTool::default()
        }
    }

    fn object() -> Value {
        json!({ "type": "object", "properties": { "n": { "type": "integer" } }, "required": ["n"] })
    }

    #[test]
    fn good_declarations_pass_and_keep_their_schema() {
        let d = check(vec![tool("math.add", object())], Vec::new()).unwrap();
        assert_eq!(d.tools[0].name, "math.add");
        assert_eq!(d.tools[0].input_schema["required"], json!(["n"]));
        assert!(d.tool("math.add").is_some());
    }

    #[test]
    fn bad_names_descriptions_and_schemas_are_refused_with_the_reason() {
        let cases = [
            (tool("", object()), "1-128 characters"),
            (tool("has space", object()), "contains ' '"),
            (tool(&"x".repeat(129), object()), "1-128 characters"),
            (
                tool("t", json!({ "type": "string" })),
                "\"type\": \"object\"",
            ),
            (tool("t", json!([1])), "must be a JSON object"),
            (
                tool(
                    "t",
                    json!({ "type": "object", "properties": { "a": { "type": 5 } } }),
                ),
                "tool 't': input schema is not usable",
            ),
            (
                tool(
                    "t",
                    json!({ "type": "object", "$ref": "https://example.com/s.json" }),
                ),
                "not usable",
            ),
        ];
        for (raw, expected) in cases {
            let e = check(vec![raw], Vec::new()).err().unwrap();
            assert!(e.contains(expected), "{e} should contain {expected}");
        }
        let mut no_description = tool("t", object());
        no_description.description = " ".into();
        let e = check(vec![no_description], Vec::new()).err().unwrap();
        assert!(e.contains("description is empty"), "{e}");
        let mut bad_json = tool("t", object());
        bad_json.input_schema = "{".into();
        let e = check(vec![bad_json], Vec::new()).err().unwrap();
        assert!(e.contains("input schema is not valid JSON"), "{e}");
        let e = check(vec![tool("t", object()), tool("t", object())], Vec::new())
            .err()
            .unwrap();
        assert_eq!(e, "declares tool 't' twice");
        let mut roles = tool("t", object());
        roles.access.roles = vec!["a b".into()];
        let e = check(vec![roles], Vec::new()).err().unwrap();
        assert!(e.contains("role \"a b\""), "{e}");
    }

    #[test]
    fn prompt_arguments_are_checked() {
        let arg = |name: &str| PromptArgument {
            name: name.into(),
            description: None,
            required: true,
        };
        let prompt = |args| RawPrompt {
            name: "p".into(),
            arguments: args,
            ..RawPrompt::default()
        };
        assert!(check(Vec::new(), vec![prompt(vec![arg("a"), arg("b")])]).is_ok());
        let e = check(Vec::new(), vec![prompt(vec![arg("a"), arg("a")])])
            .err()
            .unwrap();
        assert_eq!(e, "prompt 'p': argument 'a' twice");
        let e = check(Vec::new(), vec![prompt(vec![arg("a b")])])
            .err()
            .unwrap();
        assert!(e.contains("prompt 'p': argument name"), "{e}");
    }

    #[test]
    fn argument_errors_name_the_field() {
        let d = check(
            vec![tool(
                "t",
                json!({
                    "type": "object",
                    "properties": {
                        "n": { "type": "integer" },
                        "inner": { "type": "object", "properties": { "s": { "type": "string" } } }
                    },
                    "required": ["n"],
                    "additionalProperties": false
                }),
            )],
            Vec::new(),
        )
        .unwrap();
        let t = &d.tools[0];
        assert_eq!(argument_errors(t, &json!({ "n": 1 })), None);
        let e = argument_errors(t, &json!({ "n": "one" })).unwrap();
        assert!(e.starts_with("/n: "), "{e}");
        assert!(e.contains("integer"), "{e}");
        let e = argument_errors(t, &json!({ "n": 1, "inner": { "s": 2 } })).unwrap();
        assert!(e.starts_with("/inner/s: "), "{e}");
        let e = argument_errors(t, &json!({})).unwrap();
        assert!(e.starts_with("(root): "), "{e}");
        assert!(e.contains("\"n\" is a required property"), "{e}");
        let e = argument_errors(t, &json!({ "n": 1, "extra": true })).unwrap();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn draft_2020_12_is_the_default_dialect() {
        // `prefixItems` exists only in 2020-12.
        let d = check(
            vec![tool(
                "t",
                json!({
                    "type": "object",
                    "properties": { "pair": { "type": "array", "prefixItems": [{ "type": "string" }] } }
                }),
            )],
            Vec::new(),
        )
        .unwrap();
        assert!(argument_errors(&d.tools[0], &json!({ "pair": [1] })).is_some());
        assert!(argument_errors(&d.tools[0], &json!({ "pair": ["a"] })).is_none());
    }
}
