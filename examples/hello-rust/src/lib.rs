//! The smallest useful Kiln plugin: a greeting (as an HTTP route, a GraphQL
//! field and an MCP tool) and a JSON echo. The three greetings do the same
//! work, so the benchmarks compare the front doors on one plugin.

use kiln_sdk::graphql::{Graphql, Resolve};
use kiln_sdk::mcp::{Mcp, Tool, ToolCall, ToolResult};
use kiln_sdk::{Error, Plugin, Request, Response, Result, Router};
use serde_json::{Value, json};

struct Hello;

impl Plugin for Hello {
    fn routes() -> Router {
        Router::new()
            .get("/hello/{name}", hello)
            .post("/echo", echo)
    }

    fn graphql() -> Graphql {
        Graphql::new(r#"extend type Query { "A greeting" hello(name: String = "world"): String! }"#)
            .query("hello", hello_field)
    }

    fn mcp() -> Mcp {
        Mcp::new().tool(
            Tool::new("hello", "Greets someone by name.", hello_tool)
                .input(json!({
                    "type": "object",
                    "properties": { "name": { "type": "string", "maxLength": 200 } },
                    "additionalProperties": false
                }))
                .read_only()
                .idempotent(),
        )
    }
}

/// Tool `hello` with `{"name": "Ada"}` → the text `Hello, Ada!`
fn hello_tool(call: ToolCall) -> Result<ToolResult> {
    let name: String = call.arg_opt("name")?.unwrap_or_else(|| "world".into());
    Ok(ToolResult::text(format!("Hello, {name}!")))
}

/// `{ hello(name: "Ada") }` → `"Hello, Ada!"`
fn hello_field(r: Resolve) -> Result<Value> {
    let name: String = r.arg("name")?;
    Ok(json!(format!("Hello, {name}!")))
}

/// `GET /hello/{name}` → `{"message":"Hello, <name>!"}`
fn hello(req: Request) -> Result<Response> {
    let name = req.param("name").unwrap_or("world");
    Response::json(&json!({ "message": format!("Hello, {name}!") }))
}

/// `POST /echo` → the JSON body back, as `{"echo": <body>}`.
fn echo(req: Request) -> Result<Response> {
    let body: Value = req.json()?;
    if !body.is_object() && !body.is_array() {
        return Err(Error::bad_request("expected a JSON object or array"));
    }
    Response::json(&json!({ "echo": body }))
}

kiln_sdk::export_plugin!(Hello);
