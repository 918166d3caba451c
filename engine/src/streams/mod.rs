//! Streaming fan-out: the pub/sub broker that feeds GraphQL subscriptions,
//! and the Redis bridge that carries messages between engines.

pub mod broker;
pub mod limits;
pub mod redis_bridge;

pub use broker::{Broker, Delivery};
