//! `kiln:plugin/pubsub`: publishing to the shared broker. Topics are shared
//! by every plugin (a topic is a meeting point between publishers and
//! GraphQL subscriptions), so the only scope is "not during describe()".

use super::Answer;
use super::HostServices;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::pubsub::{Host, add_to_linker};
use crate::runtime::bindings::types::{Error, ErrorCode};
use crate::runtime::state::CallState;
use crate::streams::Broker;
use crate::streams::broker::PublishError;

/// The `kiln:plugin/pubsub` capability.
pub struct PubSub {
    broker: Option<Broker>,
}

impl Capability for PubSub {
    /// None while describing (or without a broker).
    type Scope = Option<Broker>;
    type Call = ();

    fn new(services: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(PubSub {
            broker: services.pubsub.clone(),
        })
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<Self::Scope, String> {
        Ok(plugin.unless_describing(&self.broker))
    }

    fn begin(_: &Self::Scope, _: &mut CallStart<'_>) {}
}

impl Host for View<'_, PubSub> {
    fn publish(&mut self, topic: String, message: String) -> Answer<()> {
        let Some(broker) = self.scope.as_ref() else {
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
