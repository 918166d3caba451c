//! Publishing to pub/sub topics. The host fans each message out to every
//! GraphQL subscription fed by the topic, on every engine sharing Redis.

use serde::Serialize;

use crate::Result;
use crate::bindings::kiln::plugin::pubsub as wit;

/// Publishes `message` (serialised as JSON) to `topic`.
pub fn publish(topic: &str, message: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(message)?;
    wit::publish(topic, &text).map_err(Into::into)
}

/// Publishes JSON text as it is; the host checks it parses.
pub fn publish_raw(topic: &str, json: &str) -> Result<()> {
    wit::publish(topic, json).map_err(Into::into)
}
