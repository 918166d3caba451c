//! A small REST API over the plugin's own SQL table, with ids from an
//! atomic key-value counter (which keeps the SQL the same on SQLite and
//! PostgreSQL).
//!
//! GET    /notes            list (newest first; ?limit=1..100)
//! POST   /notes            create {"title", "body"} → 201
//! GET    /notes/{id}       one note
//! PUT    /notes/{id}       replace {"title", "body"}
//! DELETE /notes/{id}       → 204
//! GET    /notes-stats      {"created": n, "stored": n}
//! GET    /notes/{id}/views  the note's view counter (kv get)
//! POST   /notes/{id}/views  count a view (kv increment)

use kiln_sdk::sql::{self, Value};
use kiln_sdk::{Error, ErrorCode, Plugin, Request, Response, Result, Router, kv};
use serde::Deserialize;
use serde_json::json;

struct Notes;

impl Plugin for Notes {
    fn routes() -> Router {
        Router::new()
            .get("/notes", list)
            .post("/notes", create)
            .get("/notes/{id}", get)
            .put("/notes/{id}", update)
            .delete("/notes/{id}", remove)
            .get("/notes-stats", stats)
            .get("/notes/{id}/views", views)
            .post("/notes/{id}/views", count_view)
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notes (
    id BIGINT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
)";

/// Runs `op`; if the database rejected it (the table may not exist yet in a
/// fresh plugin), creates the table and tries once more. Outages are passed
/// on as they are. Reads cost one statement.
fn with_schema<T>(op: impl Fn() -> Result<T>) -> Result<T> {
    op().or_else(|e| {
        if e.code != ErrorCode::BadRequest {
            return Err(e);
        }
        sql::execute(SCHEMA, &[])?;
        op()
    })
}

fn query(statement: &str, params: &[Value]) -> Result<sql::QueryResult> {
    with_schema(|| sql::query(statement, params))
}

fn execute(statement: &str, params: &[Value]) -> Result<u64> {
    with_schema(|| sql::execute(statement, params))
}

#[derive(Deserialize)]
struct NoteInput {
    title: String,
    body: String,
}

impl NoteInput {
    fn parse(req: &Request) -> Result<NoteInput> {
        let input: NoteInput = req.json()?;
        if input.title.trim().is_empty() || input.title.len() > 200 {
            return Err(Error::unprocessable("title must be 1-200 characters"));
        }
        if input.body.len() > 100_000 {
            return Err(Error::unprocessable("body must be at most 100000 bytes"));
        }
        Ok(input)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn id_param(req: &Request) -> Result<i64> {
    req.param("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Error::bad_request("id must be an integer"))
}

const COLUMNS: &str = "id, title, body, created_at, updated_at";

fn find(id: i64) -> Result<serde_json::Value> {
    let r = query(
        &format!("SELECT {COLUMNS} FROM notes WHERE id = $1"),
        &[id.into()],
    )?;
    r.to_json()
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("no note {id}")))
}

fn list(req: Request) -> Result<Response> {
    let limit: i64 = req
        .query_param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::bad_request("limit must be 1-100"));
    }
    let r = query(
        &format!("SELECT {COLUMNS} FROM notes ORDER BY id DESC LIMIT $1"),
        &[limit.into()],
    )?;
    Response::json(&r.to_json())
}

fn create(req: Request) -> Result<Response> {
    let input = NoteInput::parse(&req)?;
    let id = kv::increment("next-note-id", 1)?;
    let now = now_ms();
    execute(
        "INSERT INTO notes (id, title, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        &[id.into(), input.title.into(), input.body.into(), now.into()],
    )?;
    Ok(Response::json(&find(id)?)?
        .with_status(201)
        .with_header("location", format!("/notes/{id}")))
}

fn get(req: Request) -> Result<Response> {
    let id = id_param(&req)?;
    Response::json(&find(id)?)
}

fn update(req: Request) -> Result<Response> {
    let id = id_param(&req)?;
    let input = NoteInput::parse(&req)?;
    let changed = execute(
        "UPDATE notes SET title = $1, body = $2, updated_at = $3 WHERE id = $4",
        &[
            input.title.into(),
            input.body.into(),
            now_ms().into(),
            id.into(),
        ],
    )?;
    if changed == 0 {
        return Err(Error::not_found(format!("no note {id}")));
    }
    Response::json(&find(id)?)
}

fn remove(req: Request) -> Result<Response> {
    let id = id_param(&req)?;
    match execute("DELETE FROM notes WHERE id = $1", &[id.into()])? {
        0 => Err(Error::not_found(format!("no note {id}"))),
        _ => Ok(Response::new(204)),
    }
}

fn stats(_: Request) -> Result<Response> {
    let stored = query("SELECT count(*) FROM notes", &[])?;
    let stored = stored
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let created = kv::get("next-note-id")?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    Response::json(&json!({ "created": created, "stored": stored }))
}

fn views(req: Request) -> Result<Response> {
    let id = id_param(&req)?;
    let views = kv::get(&format!("views:{id}"))?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    Response::json(&json!({ "id": id, "views": views }))
}

fn count_view(req: Request) -> Result<Response> {
    let id = id_param(&req)?;
    Response::json(&json!({ "id": id, "views": kv::increment(&format!("views:{id}"), 1)? }))
}

kiln_sdk::export_plugin!(Notes);
