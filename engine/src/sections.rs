//! Every section of `kiln.toml` a unit owns, one line each. The engine's
//! own keys live in `config`; a unit's table (its type, defaults, checks,
//! `KILN_*` variables) lives in the unit, as a `config::Section`. Loading
//! claims every section listed here and refuses a top-level table nobody
//! claims.
//!
//! Adding a section: implement `Section` in the unit and add its line.

use std::path::Path;

use crate::config::{Config, ConfigError, Env};

/// Claims every unit's section of `config`, then refuses what is left.
pub fn claim(config: &mut Config, env: Env<'_>) -> Result<(), ConfigError> {
    config.claim::<crate::http::config::HttpConfig>(env)?;
    config.claim::<crate::http::rate_limit::RateLimits>(env)?;
    config.claim::<crate::graphql::config::GraphqlConfig>(env)?;
    config.claim::<crate::mcp::config::McpConfig>(env)?;
    config.claim::<crate::identity::config::IdentityConfig>(env)?;
    config.claim::<crate::identity::access::AccessConfig>(env)?;
    config.claim::<crate::streams::limits::StreamLimits>(env)?;
    config.claim::<crate::streams::broker::PubsubConfig>(env)?;
    config.claim::<crate::store::DatabaseConfig>(env)?;
    config.claim::<crate::store::cache::CacheConfig>(env)?;
    config.claim::<crate::host::outbound::OutboundCeiling>(env)?;
    config.claim::<crate::billing::BillingConfig>(env)?;
    config.refuse_unknown()
}

/// The whole configuration: `path` (when given) over the defaults, then
/// `KILN_*` variables from `env`, every section claimed.
pub fn load(
    path: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut config = Config::load(path, &env)?;
    claim(&mut config, &env)?;
    Ok(config)
}

/// The whole configuration of `text` (tests, examples), without `KILN_*`
/// variables.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut config = Config::parse(path, text)?;
    claim(&mut config, &|_| None)?;
    Ok(config)
}
