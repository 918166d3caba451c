//! `kiln:plugin/sql`: statements on the calling plugin's own database
//! (SQLite) or schema and role (PostgreSQL), fixed at load.

use std::sync::Arc;

use super::capability::scope_in_call;
use super::capability::{CallStart, Capability, Narrow, PluginFacts, View, view};
use super::{Answer, HostServices};
use crate::config::Config;
use crate::runtime::bindings::kiln::plugin::sql::{
    Host, QueryResult, Statement, Value, add_to_linker,
};
use crate::runtime::bindings::types::Error;
use crate::runtime::state::CallState;
use crate::store::sql::{self as store, SqlService};

/// The `kiln:plugin/sql` capability.
pub struct Sql {
    service: Option<Arc<SqlService>>,
}

#[derive(Clone)]
pub struct SqlScope {
    pub service: Arc<SqlService>,
    pub plugin: String,
}

impl Capability for Sql {
    /// None while describing (or without a database).
    type Scope = Option<SqlScope>;
    type Call = ();

    fn new(services: &HostServices, _: &Config) -> Result<Self, String> {
        Ok(Sql {
            service: services.sql.clone(),
        })
    }

    fn link(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
        add_to_linker::<CallState, Narrow<Self>>(linker, view::<Self>)
    }

    fn scope(&self, plugin: &PluginFacts<'_>) -> Result<Self::Scope, String> {
        Ok(plugin.unless_describing(&self.service)
            .map(|service| SqlScope {
                service,
                plugin: plugin.name.to_string(),
            }))
    }

    fn begin(_: &Self::Scope, _: &mut CallStart<'_>) {}
}

impl View<'_, Sql> {
    fn sql_scope(&self) -> Result<SqlScope, Error> {
        scope_in_call(self.scope, "SQL")
    }
}

fn to_store(values: Vec<Value>) -> Vec<store::Value> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Null => store::Value::Null,
            Value::Integer(i) => store::Value::Integer(i),
            Value::Real(f) => store::Value::Real(f),
            Value::Text(s) => store::Value::Text(s),
            Value::Blob(b) => store::Value::Blob(b),
            Value::Boolean(b) => store::Value::Boolean(b),
        })
        .collect()
}

fn from_store(v: store::Value) -> Value {
    match v {
        store::Value::Null => Value::Null,
        store::Value::Integer(i) => Value::Integer(i),
        store::Value::Real(f) => Value::Real(f),
        store::Value::Text(s) => Value::Text(s),
        store::Value::Blob(b) => Value::Blob(b),
        store::Value::Boolean(b) => Value::Boolean(b),
    }
}

impl Host for View<'_, Sql> {
    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Answer<u64> {
        let s = scope_or_return!(self.sql_scope());
        let r = s.service.execute(&s.plugin, &sql, &to_store(params)).await;
        self.meta.data_answer("SQL database", r)
    }

    async fn query(&mut self, sql: String, params: Vec<Value>) -> Answer<QueryResult> {
        let s = scope_or_return!(self.sql_scope());
        let r = s
            .service
            .query(&s.plugin, &sql, &to_store(params))
            .await
            .map(|r| QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(from_store).collect())
                    .collect(),
            });
        self.meta.data_answer("SQL database", r)
    }

    async fn transaction(&mut self, statements: Vec<Statement>) -> Answer<Vec<u64>> {
        let s = scope_or_return!(self.sql_scope());
        let statements: Vec<(String, Vec<store::Value>)> = statements
            .into_iter()
            .map(|st| (st.sql, to_store(st.params)))
            .collect();
        let r = s.service.transaction(&s.plugin, &statements).await;
        self.meta.data_answer("SQL database", r)
    }
}
