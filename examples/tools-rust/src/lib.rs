//! Example plugin: MCP tools an assistant can use, and a prompt.
//!
//! - `json.pick`: pulls values out of a JSON document by JSON Pointer.
//! - `math.stats`: count, sum, mean, median, min, max and standard deviation
//!   of a list of numbers, as structured content with an output schema.
//! - `memo.save`, `memo.recall`, `memo.list`: notes kept in the plugin's
//!   key-value store, so they survive restarts and reloads.
//! - prompt `review-memos`: asks the model to review every saved memo.

use kiln_sdk::mcp::{
    Mcp, Prompt, PromptCall, PromptResult, PromptRole, Tool, ToolCall, ToolResult, content,
    progress,
};
use kiln_sdk::{Error, Plugin, Result, kv};
use serde_json::{Value, json};

/// Memos live under this key prefix in the plugin's own namespace.
const MEMO: &str = "memo:";
const MAX_MEMOS_LISTED: u32 = 100;

struct Tools;

impl Plugin for Tools {
    fn mcp() -> Mcp {
        Mcp::new()
            .tool(
                Tool::new(
                    "json.pick",
                    "Extracts values from a JSON document by JSON Pointer (RFC 6901), e.g. \
                     \"/items/0/name\". Returns an object mapping each pointer to its value \
                     (null when absent).",
                    pick,
                )
                .title("Pick from JSON")
                .input(json!({
                    "type": "object",
                    "properties": {
                        "document": { "description": "Any JSON value." },
                        "pointers": {
                            "type": "array",
                            "items": { "type": "string", "pattern": "^(/.*)?$" },
                            "minItems": 1,
                            "maxItems": 100
                        }
                    },
                    "required": ["document", "pointers"],
                    "additionalProperties": false
                }))
                .read_only()
                .idempotent(),
            )
            .tool(
                Tool::new(
                    "math.stats",
                    "Descriptive statistics of a list of numbers: count, sum, mean, median, \
                     min, max and population standard deviation.",
                    stats,
                )
                .title("Statistics")
                .input(json!({
                    "type": "object",
                    "properties": {
                        "numbers": {
                            "type": "array",
                            "items": { "type": "number" },
                            "minItems": 1,
                            "maxItems": 100000
                        }
                    },
                    "required": ["numbers"],
                    "additionalProperties": false
                }))
                .output(json!({
                    "type": "object",
                    "properties": {
                        "count": { "type": "integer" },
                        "sum": { "type": "number" },
                        "mean": { "type": "number" },
                        "median": { "type": "number" },
                        "min": { "type": "number" },
                        "max": { "type": "number" },
                        "stddev": { "type": "number" }
                    },
                    "required": ["count", "sum", "mean", "median", "min", "max", "stddev"]
                }))
                .read_only()
                .idempotent(),
            )
            .tool(
                Tool::new(
                    "memo.save",
                    "Saves a memo under a title, replacing one with the same title.",
                    save,
                )
                .title("Save a memo")
                .input(json!({
                    "type": "object",
                    "properties": {
                        "title": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "text": { "type": "string", "maxLength": 65536 }
                    },
                    "required": ["title", "text"],
                    "additionalProperties": false
                }))
                .destructive(true)
                .idempotent(),
            )
            .tool(
                Tool::new(
                    "memo.recall",
                    "Returns the memo saved under a title.",
                    recall,
                )
                .title("Recall a memo")
                .input(json!({
                    "type": "object",
                    "properties": { "title": { "type": "string", "minLength": 1 } },
                    "required": ["title"],
                    "additionalProperties": false
                }))
                .read_only(),
            )
            .tool(
                Tool::new("memo.list", "Lists the titles of saved memos.", list)
                    .title("List memos")
                    .read_only(),
            )
            .prompt(
                Prompt::new(
                    "review-memos",
                    "Asks the model to review the saved memos and suggest what to do next.",
                    review,
                )
                .title("Review memos")
                .optional_argument("focus", "What to pay attention to, e.g. \"deadlines\""),
            )
    }
}

fn pick(call: ToolCall) -> Result<ToolResult> {
    let document: Value = call.arg("document")?;
    let pointers: Vec<String> = call.arg("pointers")?;
    let picked: serde_json::Map<String, Value> = pointers
        .into_iter()
        .map(|p| {
            let value = document.pointer(&p).cloned().unwrap_or(Value::Null);
            (p, value)
        })
        .collect();
    ToolResult::json(&picked)
}

fn stats(call: ToolCall) -> Result<ToolResult> {
    let mut numbers: Vec<f64> = call.arg("numbers")?;
    let count = numbers.len();
    let sum: f64 = numbers.iter().sum();
    let mean = sum / count as f64;
    // Sorting is the slow part on big inputs: tell the client where we are.
    progress(0.0, Some(2.0), Some("sorting"));
    numbers.sort_by(f64::total_cmp);
    progress(1.0, Some(2.0), Some("summarising"));
    let median = if count % 2 == 1 {
        numbers[count / 2]
    } else {
        (numbers[count / 2 - 1] + numbers[count / 2]) / 2.0
    };
    let variance = numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / count as f64;
    progress(2.0, Some(2.0), None);
    ToolResult::json(&json!({
        "count": count,
        "sum": sum,
        "mean": mean,
        "median": median,
        "min": numbers[0],
        "max": numbers[count - 1],
        "stddev": variance.sqrt(),
    }))
}

fn save(call: ToolCall) -> Result<ToolResult> {
    let title: String = call.arg("title")?;
    let text: String = call.arg("text")?;
    kv::set(&format!("{MEMO}{title}"), text.as_bytes(), None)?;
    Ok(ToolResult::text(format!("Saved memo '{title}'.")))
}

fn recall(call: ToolCall) -> Result<ToolResult> {
    let title: String = call.arg("title")?;
    match kv::get(&format!("{MEMO}{title}"))? {
        Some(bytes) => Ok(ToolResult::default().with(content::resource_text(
            &format!("memo:///{}", encode(&title)),
            Some("text/plain"),
            String::from_utf8_lossy(&bytes),
        ))),
        // The model asked for something that is not there: it can try a
        // title from memo.list.
        None => Ok(ToolResult::error(format!(
            "no memo is titled '{title}'; memo.list shows the saved titles"
        ))),
    }
}

fn list(_: ToolCall) -> Result<ToolResult> {
    let titles = titles()?;
    ToolResult::json(&json!({ "titles": titles }))
}

fn titles() -> Result<Vec<String>> {
    Ok(kv::list_keys(MEMO, None, MAX_MEMOS_LISTED)?
        .into_iter()
        .filter_map(|k| k.strip_prefix(MEMO).map(str::to_string))
        .collect())
}

fn review(call: PromptCall) -> Result<PromptResult> {
    let titles = titles()?;
    if titles.is_empty() {
        return Err(Error::not_found("there are no memos to review yet"));
    }
    let mut result = PromptResult::new().description(format!("Review of {} memos", titles.len()));
    for title in &titles {
        let text = kv::get(&format!("{MEMO}{title}"))?.unwrap_or_default();
        result = result.message(
            PromptRole::User,
            content::resource_text(
                &format!("memo:///{}", encode(title)),
                Some("text/plain"),
                String::from_utf8_lossy(&text),
            ),
        );
    }
    let focus = call
        .arg_opt("focus")
        .map(|f| format!(" Pay special attention to {f}."))
        .unwrap_or_default();
    Ok(result.user(format!(
        "Above are my memos. Summarise them, point out anything that conflicts or is \
         missing, and suggest next steps.{focus}"
    )))
}

/// Percent-encodes a title for use in a URI path.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

kiln_sdk::export_plugin!(Tools);
