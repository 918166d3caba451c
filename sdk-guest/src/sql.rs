//! SQL on the plugin's own tables (its own SQLite file, or its own
//! PostgreSQL schema). Parameters are always bound: `$1`, `$2`, …

use crate::Result;
use crate::bindings::kiln::plugin::sql as wit;

pub use wit::{QueryResult, Statement, Value};

/// Runs one statement; returns the number of rows it changed.
pub fn execute(sql: &str, params: &[Value]) -> Result<u64> {
    wit::execute(sql, params).map_err(Into::into)
}

/// Runs one query; returns its columns and rows.
pub fn query(sql: &str, params: &[Value]) -> Result<QueryResult> {
    wit::query(sql, params).map_err(Into::into)
}

/// Runs the statements in one transaction: all take effect or none.
pub fn transaction(statements: &[Statement]) -> Result<Vec<u64>> {
    wit::transaction(statements).map_err(Into::into)
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Integer(i) => Some(*i != 0),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as JSON: integers, reals, text and booleans as themselves,
    /// blobs as arrays of bytes, NULL as null.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Integer(i) => (*i).into(),
            Value::Real(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Text(s) => s.clone().into(),
            Value::Blob(b) => b.clone().into(),
            Value::Boolean(b) => (*b).into(),
        }
    }
}

impl QueryResult {
    /// Rows as JSON objects keyed by column name.
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        self.rows
            .iter()
            .map(|row| {
                let map: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().map(Value::to_json))
                    .collect();
                serde_json::Value::Object(map)
            })
            .collect()
    }
}
