//! `kiln:plugin/pubsub`: publishing to the shared broker. Topics are shared
//! by every plugin (a topic is a meeting point between publishers and
//! GraphQL subscriptions), so the only scope is "not during describe()".

use super::Answer;
use crate::runtime::bindings::kiln::plugin::pubsub::Host;
use crate::runtime::bindings::types::{Error, ErrorCode};
use crate::runtime::state::CallState;
use crate::streams::broker::PublishError;

impl Host for CallState {
    fn publish(&mut self, topic: String, message: String) -> Answer<()> {
        let Some(broker) = self.plugin.pubsub.as_ref() else {
            return Ok(Err(Error {
                code: ErrorCode::Unavailable,
                message: "pub/sub is not available here (not during describe())".into(),
            }));
        };
        Ok(broker
            .publish(&topic, &message)
            .map_err(|PublishError::Invalid(message)| Error {
                code: ErrorCode::BadRequest,
                message,
            }))
    }
}
