//! End-to-end tests: each starts a real `kiln` process on an ephemeral port
//! with real plugin components and talks to it over HTTP.

mod abuse;
mod access_paths;
mod admin;
mod billing;
mod cache;
mod ceilings;
mod cli;
mod compat;
mod docs;
mod graphql;
mod hardening;
mod identity;
mod js;
mod kv;
mod limits;
mod mcp;
mod outbound;
mod plugin_names;
mod pubsub;
mod rate_limits;
mod reload;
mod routes;
mod shutdown;
mod sql;
mod store;
