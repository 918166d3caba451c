//! GraphQL fields, schema first: the plugin gives its SDL fragment and one
//! resolver per field it owns; the host merges the SDL with every other
//! plugin's and calls the resolver with the field's arguments as JSON.
//!
//! ```ignore
//! use kiln_sdk::graphql::{Graphql, Resolve};
//! use serde_json::{json, Value};
//!
//! fn graphql() -> Graphql {
//!     Graphql::new(r#"
//!         type Product { sku: String!, name: String! }
//!         extend type Query { product(sku: String!): Product }
//!     "#)
//!     .query("product", product)
//! }
//!
//! fn product(r: Resolve) -> kiln_sdk::Result<Value> {
//!     let sku: String = r.arg("sku")?;
//!     Ok(json!({ "sku": sku, "name": "Tea" }))
//! }
//! ```
//!
//! Nested fields of the value a resolver returns are read from it by name,
//! so most plugins resolve root fields only. Subscription fields need no
//! resolver: they are fed by the pub/sub topic named in `@topic`.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bindings::exports::kiln::plugin::graphql as wit;
use crate::{Error, Result};

/// A resolver: the request in, the field's value as JSON out.
pub type Resolver = fn(Resolve) -> Result<Value>;

/// The plugin's GraphQL contribution: SDL and resolvers.
#[derive(Default)]
pub struct Graphql {
    // Built on every call: a `&'static str` SDL is not copied.
    sdl: Cow<'static, str>,
    resolvers: Vec<(String, String, Resolver)>,
}

impl Graphql {
    /// No GraphQL fields: what [`Plugin::graphql`](crate::Plugin::graphql) returns by default.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new(sdl: impl Into<Cow<'static, str>>) -> Self {
        Graphql {
            sdl: sdl.into(),
            resolvers: Vec::new(),
        }
    }

    /// Resolves `Query.<field>`.
    pub fn query(self, field: &str, resolver: Resolver) -> Self {
        self.field("Query", field, resolver)
    }

    /// Resolves `Mutation.<field>`.
    pub fn mutation(self, field: &str, resolver: Resolver) -> Self {
        self.field("Mutation", field, resolver)
    }

    /// Resolves `<type_name>.<field>`, a field this plugin added to a type
    /// with `extend type`; the resolver gets the parent object.
    pub fn field(mut self, type_name: &str, field: &str, resolver: Resolver) -> Self {
        self.resolvers
            .push((type_name.to_string(), field.to_string(), resolver));
        self
    }

    pub fn sdl(&self) -> &str {
        &self.sdl
    }

    pub(crate) fn find(&self, type_name: &str, field: &str) -> Option<Resolver> {
        self.resolvers
            .iter()
            .find(|(t, f, _)| t == type_name && f == field)
            .map(|(_, _, r)| *r)
    }
}

/// One field to resolve.
#[derive(Debug, Clone)]
pub struct Resolve {
    /// `Query`, `Mutation`, or the type this plugin extended.
    pub parent_type: String,
    pub field: String,
    /// The arguments as a JSON object (defaults applied, enums as strings).
    pub arguments: Value,
    /// The parent object, for fields added with `extend type`.
    pub parent: Option<Value>,
    pub request_id: String,
    /// `query`, `mutation` or `subscription`.
    pub operation: String,
    /// The authenticated principal, when there is one.
    pub principal: Option<Value>,
}

impl Resolve {
    /// A required argument; a missing or mistyped one is a `bad-request`.
    pub fn arg<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        crate::args::required(&self.arguments, name)
    }

    /// An optional argument: `None` when absent or null.
    pub fn arg_opt<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        crate::args::optional(&self.arguments, name)
    }

    /// The parent object, decoded.
    pub fn parent<T: DeserializeOwned>(&self) -> Result<T> {
        let parent = self.parent.as_ref().ok_or_else(|| {
            Error::internal(format!(
                "{}.{} has no parent object",
                self.parent_type, self.field
            ))
        })?;
        serde_json::from_value(parent.clone())
            .map_err(|e| Error::internal(format!("unexpected parent object: {e}")))
    }
}

impl TryFrom<wit::ResolveRequest> for Resolve {
    type Error = Error;

    fn try_from(r: wit::ResolveRequest) -> Result<Self> {
        let json = |what: &str, text: &str| {
            serde_json::from_str::<Value>(text)
                .map_err(|e| Error::internal(format!("the host sent {what} that is not JSON: {e}")))
        };
        Ok(Resolve {
            arguments: json("arguments", &r.arguments)?,
            parent: r
                .parent
                .as_deref()
                .map(|p| json("a parent", p))
                .transpose()?,
            principal: r
                .context
                .principal
                .as_deref()
                .map(|p| json("a principal", p))
                .transpose()?,
            parent_type: r.parent_type,
            field: r.field,
            request_id: r.context.request_id,
            operation: r.context.operation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(arguments: Value, parent: Option<Value>) -> Resolve {
        Resolve {
            parent_type: "Query".into(),
            field: "f".into(),
            arguments,
            parent,
            request_id: "r".into(),
            operation: "query".into(),
            principal: None,
        }
    }

    #[test]
    fn arguments_decode_or_say_which_one_is_wrong() {
        let r = resolve(json!({ "sku": "tea", "n": 3, "none": null }), None);
        assert_eq!(r.arg::<String>("sku").unwrap(), "tea");
        assert_eq!(r.arg_opt::<u32>("n").unwrap(), Some(3));
        assert_eq!(r.arg_opt::<u32>("none").unwrap(), None);
        assert_eq!(r.arg_opt::<u32>("absent").unwrap(), None);
        let e = r.arg::<String>("absent").unwrap_err();
        assert_eq!(e.message, "argument 'absent' is missing");
        let e = r.arg::<u32>("sku").unwrap_err();
        assert!(
            e.message.starts_with("argument 'sku': invalid type"),
            "{}",
            e.message
        );
        assert!(
            r.parent::<Value>()
                .unwrap_err()
                .message
                .contains("has no parent")
        );
        let child = resolve(json!({}), Some(json!({ "name": "Dune" })));
        assert_eq!(child.parent::<Value>().unwrap()["name"], "Dune");
    }

    #[test]
    fn resolvers_are_found_by_type_and_field() {
        fn one(_: Resolve) -> Result<Value> {
            Ok(json!(1))
        }
        let g = Graphql::new("extend type Query { a: Int }")
            .query("a", one)
            .field("Product", "reviews", one);
        assert!(g.find("Query", "a").is_some());
        assert!(g.find("Product", "reviews").is_some());
        assert!(g.find("Mutation", "a").is_none());
        assert!(Graphql::none().sdl().is_empty());
    }
}
