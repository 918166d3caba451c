//! Example plugin: text tools that cost money, to show Kiln's billing.
//!
//! - `POST /words/count` `{"text": "…"}` → `{"words": n}`: a flat price,
//!   1,000 micros ($0.001) a call, declared with `.price(…)`.
//! - `POST /words/shout` `{"text": "…"}` → the text upper-cased, charged per
//!   word: 100 micros a word. The route's price (10,000 micros) is the most
//!   one call can cost, and what the host holds before it runs; the handler
//!   charges what it used, so a 3-word call costs 300. Words past what the
//!   hold covers are left out and the answer says so.
//! - MCP tool `words.count`: the same count for an assistant, 500 micros.
//!
//! A caller without the funds gets 402 (or a tool error result) and the
//! plugin never runs. The operator can change any of these prices, or make
//! them free, with `[[billing.prices]]` in kiln.toml.

use kiln_sdk::mcp::{Mcp, Tool, ToolCall, ToolResult};
use kiln_sdk::{Error, Plugin, Request, Response, Result, Router, billing};
use serde_json::{Value, json};

/// What one shouted word costs, in micros.
const MICROS_PER_WORD: u64 = 100;

struct Words;

impl Plugin for Words {
    fn routes() -> Router {
        Router::new()
            .post("/words/count", count)
            .price(1_000)
            .post("/words/shout", shout)
            .price(100 * MICROS_PER_WORD)
    }

    fn mcp() -> Mcp {
        Mcp::new().tool(
            Tool::new("words.count", "Counts the words of a text.", count_tool)
                .input(json!({
                    "type": "object",
                    "properties": { "text": { "type": "string", "maxLength": 100000 } },
                    "required": ["text"],
                    "additionalProperties": false
                }))
                .read_only()
                .idempotent()
                .price_micros(500),
        )
    }
}

fn text_of(req: &Request) -> Result<String> {
    let body: Value = req.json()?;
    body["text"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::bad_request("expected {\"text\": \"...\"}"))
}

/// `POST /words/count` → `{"words": n}`, at the route's flat price.
fn count(req: Request) -> Result<Response> {
    let text = text_of(&req)?;
    Response::json(&json!({ "words": text.split_whitespace().count() }))
}

/// `POST /words/shout` → `{"shout": "…", "words": n, "charged_micros": m}`,
/// charging each word as it goes.
fn shout(req: Request) -> Result<Response> {
    let text = text_of(&req)?;
    // A call that never charges costs the whole price, so an empty text is
    // refused before any work (an error answer costs nothing).
    if text.split_whitespace().next().is_none() {
        return Err(Error::bad_request("nothing to shout"));
    }
    let mut shouted = Vec::new();
    let mut charged = 0;
    let mut truncated = false;
    for word in text.split_whitespace() {
        match billing::charge(MICROS_PER_WORD, "1 word shouted") {
            Ok(total) => charged = total,
            // The hold is used up: the rest is not shouted (nor charged).
            Err(billing::BillingError::ExceedsHold(_)) => {
                truncated = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
        shouted.push(word.to_uppercase());
    }
    Response::json(&json!({
        "shout": shouted.join(" "),
        "words": shouted.len(),
        "charged_micros": charged,
        "truncated": truncated,
    }))
}

fn count_tool(call: ToolCall) -> Result<ToolResult> {
    let text: String = call.arg("text")?;
    ToolResult::json(&json!({ "words": text.split_whitespace().count() }))
}

kiln_sdk::export_plugin!(Words);
