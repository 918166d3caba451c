//! Identity: who is calling, proven by a JWT, an API key or a plugin auth
//! provider, and turned into one [`Principal`] that access rules and plugin
//! calls use.
//!
//! - [`principal`]: the principal model.
//! - [`jwt`]: verifying tokens from one configured issuer.
//! - [`api_keys`]: creating, checking (cached) and revoking API keys.
//!
//! Work in progress (issue 6): the CLI and admin API for keys, plugin auth providers, enforcement
//! on routes, GraphQL fields and MCP tools, rate limits and the audit log
//! come next; nothing here is on the request path yet.

pub mod api_keys;
pub mod jwt;
pub mod principal;

pub use principal::{AuthMethod, Principal};
