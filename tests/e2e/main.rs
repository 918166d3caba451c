//! End-to-end tests: each starts a real `kiln` process on an ephemeral port
//! with real plugin components and talks to it over HTTP.

mod admin;
mod cache;
mod ceilings;
mod cli;
mod graphql;
mod hardening;
mod identity;
mod js;
mod kv;
mod limits;
mod mcp;
mod outbound;
mod pubsub;
mod rate_limits;
mod reload;
mod routes;
mod sql;
mod store;
