//! Kiln: a programmable API engine serving WebAssembly component plugins.
//!
//! See `docs/architecture.md` for the map of this crate.

pub mod billing;
pub mod cli;
pub mod config;
pub(crate) mod front_door;
pub(crate) mod graphql;
pub(crate) mod hash;
pub(crate) mod host;
pub mod http;
pub(crate) mod identity;
pub(crate) mod manifest;
pub(crate) mod mcp;
pub(crate) mod memory;
pub(crate) mod path;
pub(crate) mod registry;
pub(crate) mod request;
pub(crate) mod routes;
pub mod runtime;
pub mod sections;
pub mod server;
pub mod store;
pub(crate) mod streams;
pub(crate) mod text;
pub(crate) mod watcher;
