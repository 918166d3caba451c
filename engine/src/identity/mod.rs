//! Identity: who is calling, proven by a JWT, an API key or a plugin auth
//! provider, and turned into one [`Principal`] that access rules and plugin
//! calls use.
//!
//! - [`principal`]: the principal model.
//! - [`jwt`]: verifying tokens from one configured issuer.
//!
//! Work in progress (issue 6): API keys, plugin auth providers, enforcement
//! on routes, GraphQL fields and MCP tools, rate limits and the audit log
//! come next; nothing here is on the request path yet.

pub mod jwt;
pub mod principal;

pub use principal::{AuthMethod, Principal};
