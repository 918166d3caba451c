//! Kiln: a programmable API engine serving WebAssembly component plugins.
//!
//! See `docs/architecture.md` for the map of this crate.

pub mod cli;
pub mod config;
pub mod front_door;
pub mod graphql;
pub mod hash;
pub mod host;
pub mod http;
pub mod identity;
pub mod manifest;
pub mod mcp;
pub mod memory;
pub mod path;
pub mod registry;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod store;
pub mod streams;
pub mod text;
pub mod watcher;
