//! Decoding named arguments from a JSON object, shared by GraphQL resolvers
//! and MCP tools: a missing or mistyped argument is a `bad-request` that
//! names it.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, Result};

pub(crate) fn required<T: DeserializeOwned>(arguments: &Value, name: &str) -> Result<T> {
    let value = arguments
        .get(name)
        .ok_or_else(|| Error::bad_request(format!("argument '{name}' is missing")))?;
    serde_json::from_value(value.clone())
        .map_err(|e| Error::bad_request(format!("argument '{name}': {e}")))
}

pub(crate) fn optional<T: DeserializeOwned>(arguments: &Value, name: &str) -> Result<Option<T>> {
    match arguments.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| Error::bad_request(format!("argument '{name}': {e}"))),
    }
}
