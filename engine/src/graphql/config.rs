//! `[graphql]`: the GraphQL endpoint's section of `kiln.toml`.

use serde::Deserialize;

use crate::config::{ConfigError, Section, at_least, invalid};

/// The GraphQL endpoint (`/graphql`, `/graphql/ws`, `/graphql/stream`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    /// Deepest selection set a query may have.
    pub max_depth: usize,
    /// Most fields (counting nested ones) a query may select.
    pub max_complexity: usize,
    /// Serve GraphiQL to browsers at `GET /graphql`.
    pub graphiql: bool,
    /// Answer introspection queries (`__schema`, `__type`).
    pub introspection: bool,
    /// A WebSocket client must send `connection_init` within this time.
    pub connection_init_timeout_ms: u64,
    /// Operations (mostly subscriptions) one WebSocket may run at once.
    pub max_operations_per_connection: usize,
    /// Most fields an operation may select once its fragments are
    /// expanded, checked before validation (see `graphql::budget`).
    pub max_fields: usize,
    /// Most plugin calls one query or mutation may make.
    pub max_plugin_calls: usize,
    /// Most errors one answer carries; the last one says how many were left out.
    pub max_errors: usize,
    /// Most directives on one field or fragment.
    pub max_directives: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            max_depth: 32,
            max_complexity: 1_000,
            graphiql: true,
            introspection: true,
            connection_init_timeout_ms: 10_000,
            max_operations_per_connection: 100,
            max_fields: 2_000,
            max_plugin_calls: 200,
            max_errors: 100,
            max_directives: 16,
        }
    }
}

impl Section for GraphqlConfig {
    const KEY: &'static str = "graphql";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_depth == 0 || self.max_complexity == 0 {
            return Err(invalid(
                "graphql.max_depth",
                "graphql.max_depth and graphql.max_complexity must be at least 1",
            ));
        }
        at_least(
            1,
            &[
                ("graphql.max_fields", self.max_fields as u64),
                ("graphql.max_plugin_calls", self.max_plugin_calls as u64),
                ("graphql.max_errors", self.max_errors as u64),
                ("graphql.max_directives", self.max_directives as u64),
            ],
        )?;
        Ok(())
    }
}
