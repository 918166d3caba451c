//! What every front door's transport shares, below them all: the request
//! id, bounded body reading, the JSON error body, the client a bounded
//! resource is counted against, and token buckets. HTTP routes, GraphQL
//! and MCP use it; it uses none of them.

pub mod body;
pub mod buckets;
pub mod client;
pub mod error;
pub mod id;
pub mod transport;
