//! Identity: who is calling, proven by a JWT or an API key, turned into one
//! [`Principal`], and what that principal may call.
//!
//! - [`principal`]: the principal model.
//! - [`config`]: `[identity]`, the credentials the engine accepts.
//! - [`authenticator`]: from request headers to a principal.
//! - [`jwt`], [`jwks`]: verifying tokens from one issuer.
//! - [`providers`]: plugin auth providers, asked in configured order.
//! - [`api_keys`]: creating, checking (cached) and revoking API keys.
//! - [`access`]: `[access]` rules and the one check every surface makes.
//! - [`revocations`]: revoking a key on every engine through Redis.

pub mod access;
pub mod api_keys;
pub mod authenticator;
pub mod config;
pub mod jwks;
pub mod jwt;
pub mod principal;
pub mod providers;
pub mod revocations;

pub use principal::{AuthMethod, Caller, Principal};
