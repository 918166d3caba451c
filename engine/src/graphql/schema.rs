//! The merged model made executable: one `async_graphql::dynamic::Schema`
//! whose root fields (and fields added by `extend type`) call the owning
//! plugin, whose other fields read the parent object's JSON, and whose
//! subscription fields are fed by pub/sub topics.
//!
//! Plugins return JSON; the host checks it against the declared type before
//! it reaches the client (GraphQL output coercion), so a plugin that returns
//! `"12"` for an `Int`, or null for a `String!`, gets a clear field error
//! with the path instead of a malformed response.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface,
    InterfaceField, Object, ResolverContext, Scalar, Schema, Subscription, SubscriptionField,
    SubscriptionFieldFuture, TypeRef, Union,
};
use async_graphql::parser::types::{BaseType, OperationType, Type};
use async_graphql::{Error, ErrorExtensions, PathSegment, Response, ServerError, Value};
use futures_util::future::BoxFuture;

use super::budget::{CallBudget, Limits, json_len};
use super::config::GraphqlConfig;
use super::merge::{Merged, Source};
use super::sdl::{FieldDecl, FieldDirectives, InputDecl, Kind};
use crate::identity::Caller;
use crate::identity::access::{AccessConfig, Denied, Target};
use crate::streams::{Broker, Delivery};

/// Adds a declared field's arguments, description and deprecation to one of
/// async-graphql's field builders (`Field`, `InterfaceField`,
/// `SubscriptionField`: the same methods, no shared trait).
macro_rules! decorate {
    ($field:expr, $decl:expr) => {{
        let (mut field, decl): (_, &FieldDecl) = ($field, $decl);
        for a in &decl.args {
            field = field.argument(input_value(a));
        }
        if let Some(d) = &decl.description {
            field = field.description(d);
        }
        if let Some(r) = &decl.directives.deprecated {
            field = field.deprecation(Some(r));
        }
        field
    }};
}

/// What the host sends a plugin to resolve one field.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    pub parent_type: String,
    pub field: String,
    pub arguments: serde_json::Value,
    pub parent: Option<serde_json::Value>,
    pub request_id: Arc<str>,
    pub operation: &'static str,
    pub caller: Caller,
    /// The hold and charges of a priced field (`kiln:plugin/billing`).
    pub meter: Option<Arc<crate::billing::Meter>>,
}

/// A field error in GraphQL terms: a message for the client and a code for
/// `extensions.code`.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
}

/// Something that resolves fields: a plugin (see `runtime::plugin`), or a
/// stand-in in tests.
pub trait Resolver: Send + Sync + 'static {
    fn resolve(
        &self,
        request: ResolveRequest,
    ) -> BoxFuture<'_, Result<serde_json::Value, FieldError>>;
}

/// Per-request data the resolvers read: set by each transport.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: Arc<str>,
    /// Who is asking, checked against `access` before each guarded field.
    pub caller: Caller,
    pub access: Arc<AccessConfig>,
    /// Charges priced fields (none in tests that price nothing).
    pub billing: Option<Arc<crate::billing::Billing>>,
    /// The client's `Idempotency-Key`, which with each field's path names
    /// its charge across retries.
    pub idempotency_key: Option<Arc<str>>,
}

/// Whether the request may read field `type_name.field` of `plugin`: root
/// fields follow the access rules (and their default), fields on object
/// types only the entries that name them; `@auth` holds everywhere. A
/// request without [`RequestInfo`] gets nothing: the host always sets it.
fn guard(
    info: Option<&RequestInfo>,
    plugin: &str,
    type_name: &str,
    field: &str,
    declared: Option<&[String]>,
) -> Result<(), Error> {
    let Some(info) = info else {
        return Err(Error::new("internal: the request has no identity context"));
    };
    let target = Target::Field {
        plugin,
        type_name,
        field,
    };
    let caller = info.caller.principal();
    let outcome = if matches!(type_name, "Query" | "Mutation" | "Subscription") {
        info.access.check(target, declared, caller)
    } else {
        info.access.check_nested(target, declared, caller)
    };
    outcome.map_err(|denied| {
        let code = match denied {
            Denied::Unauthenticated { .. } => "UNAUTHENTICATED",
            Denied::Forbidden { .. } => "FORBIDDEN",
        };
        Error::new(denied.to_string()).extend_with(|_, ext| ext.set("code", code))
    })
}

/// One field as the admin API shows it: where it comes from and what the
/// host will enforce on it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FieldInfo {
    #[serde(rename = "type")]
    pub type_name: String,
    pub field: String,
    /// The plugin that resolves it (or defines its parent type).
    pub plugin: String,
    /// `call` when the plugin is called for it, `parent` when it is read
    /// from the parent object.
    pub resolved_by: &'static str,
    #[serde(flatten)]
    pub directives: FieldDirectives,
}

pub struct GraphqlSchema {
    pub schema: Schema,
    pub fields: Vec<FieldInfo>,
    /// What one operation may cost (see `graphql::budget`).
    pub limits: Limits,
}

/// How output values of a named type are checked.
#[derive(Clone)]
enum Output {
    Builtin(&'static str),
    Custom,
    Enum(Arc<BTreeSet<String>>),
    Object,
    /// An input object, whose field defaults the host applies.
    Input(Arc<Vec<InputDecl>>),
    /// Interface or union: the value must name its concrete type in `__typename`.
    Abstract(Arc<BTreeSet<String>>),
}

type Outputs = Arc<BTreeMap<String, Output>>;

pub fn build(
    merged: &Merged,
    resolvers: &BTreeMap<String, Arc<dyn Resolver>>,
    broker: &Broker,
    config: &GraphqlConfig,
    limits: &Limits,
) -> Result<GraphqlSchema, String> {
    let outputs = Arc::new(outputs(merged));
    let has = |root: &str| {
        merged.types.get(root).is_some_and(|t| match &t.decl.kind {
            Kind::Object { fields, .. } => !fields.is_empty(),
            _ => false,
        })
    };
    let mut builder = Schema::build(
        "Query",
        has("Mutation").then_some("Mutation"),
        has("Subscription").then_some("Subscription"),
    )
    .limit_depth(config.max_depth)
    .limit_complexity(config.max_complexity)
    .limit_directives(config.max_directives);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    if !has("Query") {
        // GraphQL needs at least one query field.
        builder = builder.register(Object::new("Query").field(Field::new(
            "_kiln",
            TypeRef::named_nn(TypeRef::STRING),
            |_| {
                FieldFuture::new(async {
                    Ok(Some(Value::from("no plugin contributes query fields yet")))
                })
            },
        )));
    }
    let mut fields = Vec::new();
    for (name, ty) in &merged.types {
        let decl = &ty.decl;
        match &decl.kind {
            Kind::Object {
                implements,
                fields: decls,
            } if name == "Subscription" => {
                let mut sub = Subscription::new(name);
                for f in decls {
                    let plugin = match ty.sources.get(&f.name) {
                        Some(Source::Plugin(p)) => p.clone(),
                        _ => ty.owner.clone(),
                    };
                    fields.push(info(name, f, &plugin, "topic"));
                    sub = sub.field(subscription_field(
                        f,
                        &plugin,
                        broker.clone(),
                        outputs.clone(),
                    ));
                }
                let _ = implements;
                builder = builder.register(sub);
            }
            Kind::Object {
                implements,
                fields: decls,
            } => {
                if decls.is_empty() {
                    continue;
                }
                let mut object = Object::new(name);
                if let Some(d) = &decl.description {
                    object = object.description(d);
                }
                for i in implements {
                    object = object.implement(i);
                }
                for f in decls {
                    let source = ty.sources.get(&f.name).cloned().unwrap_or(Source::Parent);
                    let field = match &source {
                        Source::Parent => {
                            fields.push(info(name, f, &ty.owner, "parent"));
                            parent_field(name, f, &ty.owner, outputs.clone())
                        }
                        Source::Plugin(plugin) => {
                            let Some(resolver) = resolvers.get(plugin) else {
                                return Err(format!("internal: no resolver for plugin '{plugin}'"));
                            };
                            fields.push(info(name, f, plugin, "call"));
                            plugin_field(name, f, plugin, resolver.clone(), outputs.clone())
                        }
                    };
                    object = object.field(field);
                }
                builder = builder.register(object);
            }
            Kind::Interface { fields: decls } => {
                let mut interface = Interface::new(name);
                if let Some(d) = &decl.description {
                    interface = interface.description(d);
                }
                for f in decls {
                    interface = interface
                        .field(decorate!(InterfaceField::new(&f.name, type_ref(&f.ty)), f));
                }
                builder = builder.register(interface);
            }
            Kind::Union { members } => {
                let mut union = Union::new(name);
                if let Some(d) = &decl.description {
                    union = union.description(d);
                }
                for m in members {
                    union = union.possible_type(m);
                }
                builder = builder.register(union);
            }
            Kind::Enum { values } => {
                let mut e = Enum::new(name);
                if let Some(d) = &decl.description {
                    e = e.description(d);
                }
                for v in values {
                    let mut item = EnumItem::new(&v.name);
                    if let Some(d) = &v.description {
                        item = item.description(d);
                    }
                    if let Some(r) = &v.deprecated {
                        item = item.deprecation(Some(r));
                    }
                    e = e.item(item);
                }
                builder = builder.register(e);
            }
            Kind::Input { fields: decls } => {
                let mut input = InputObject::new(name);
                if let Some(d) = &decl.description {
                    input = input.description(d);
                }
                for f in decls {
                    input = input.field(input_value(f));
                }
                builder = builder.register(input);
            }
            Kind::Scalar { specified_by } => {
                let mut scalar = Scalar::new(name);
                if let Some(d) = &decl.description {
                    scalar = scalar.description(d);
                }
                if let Some(url) = specified_by {
                    scalar = scalar.specified_by_url(url);
                }
                builder = builder.register(scalar);
            }
        }
    }
    let schema = builder.finish().map_err(|e| e.0)?;
    Ok(GraphqlSchema {
        schema,
        fields,
        limits: limits.clone(),
    })
}

fn info(type_name: &str, f: &FieldDecl, plugin: &str, resolved_by: &'static str) -> FieldInfo {
    FieldInfo {
        type_name: type_name.to_string(),
        field: f.name.clone(),
        plugin: plugin.to_string(),
        resolved_by,
        directives: f.directives.clone(),
    }
}

fn outputs(merged: &Merged) -> BTreeMap<String, Output> {
    let mut out = BTreeMap::new();
    for (name, builtin) in [
        ("Int", "Int"),
        ("Float", "Float"),
        ("String", "String"),
        ("Boolean", "Boolean"),
        ("ID", "ID"),
    ] {
        out.insert(name.to_string(), Output::Builtin(builtin));
    }
    for (name, ty) in &merged.types {
        let o = match &ty.decl.kind {
            Kind::Object { .. } => Output::Object,
            Kind::Input { fields } => Output::Input(Arc::new(fields.clone())),
            Kind::Scalar { .. } => Output::Custom,
            Kind::Enum { values } => {
                Output::Enum(Arc::new(values.iter().map(|v| v.name.clone()).collect()))
            }
            Kind::Union { members } => Output::Abstract(Arc::new(members.iter().cloned().collect())),
            Kind::Interface { .. } => Output::Abstract(Arc::new(
                merged
                    .types
                    .values()
                    .filter(|t| matches!(&t.decl.kind, Kind::Object { implements, .. } if implements.contains(name)))
                    .map(|t| t.decl.name.clone())
                    .collect(),
            )),
        };
        out.insert(name.clone(), o);
    }
    out
}

fn type_ref(ty: &Type) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(item) => TypeRef::List(Box::new(type_ref(item))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

fn input_value(d: &InputDecl) -> InputValue {
    let mut v = InputValue::new(&d.name, type_ref(&d.ty));
    if let Some(default) = &d.default {
        v = v.default_value(default.clone());
    }
    if let Some(desc) = &d.description {
        v = v.description(desc);
    }
    if let Some(reason) = &d.deprecated {
        v = v.deprecation(Some(reason));
    }
    v
}

/// Where a non-null field's failure records its path, for [`finish_response`].
const PATH_MARK: &str = "__kiln_path";

/// Reports a failed field the GraphQL way: a nullable field becomes null with
/// an error at its path. A non-null field's error goes up to the executor,
/// which drops the field; the path travels in an extension because the
/// dynamic executor does not add it (see [`finish_response`]).
fn fail<'a>(
    ctx: &ResolverContext<'_>,
    nullable: bool,
    e: Error,
) -> Result<Option<FieldValue<'a>>, Error> {
    let path = ctx.ctx.set_error_path(ServerError::new("", None)).path;
    if nullable {
        let mut error = e.into_server_error(ctx.ctx.item.pos);
        error.path = path;
        ctx.ctx.add_error(error);
        Ok(None)
    } else {
        let path: Vec<Value> = path
            .into_iter()
            .map(|s| match s {
                PathSegment::Field(f) => Value::from(f),
                PathSegment::Index(i) => Value::from(i as u64),
            })
            .collect();
        Err(e.extend_with(|_, ext| ext.set(PATH_MARK, Value::List(path))))
    }
}

/// Moves the path of failed non-null fields from the extension [`fail`] put
/// it in to where GraphQL clients look for it, returning those paths: the
/// executor left them out of `data`, and `complete::propagate_nulls` nulls
/// their nearest nullable parents.
pub fn take_non_null_failures(response: &mut Response) -> Vec<Vec<PathSegment>> {
    let mut failed = Vec::new();
    for error in &mut response.errors {
        let Some(ext) = error.extensions.as_mut() else {
            continue;
        };
        if let Some(Value::List(path)) = ext.get(PATH_MARK).cloned() {
            error.path = path
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(PathSegment::Field(s)),
                    Value::Number(n) => n.as_u64().map(|i| PathSegment::Index(i as usize)),
                    _ => None,
                })
                .collect();
            ext.unset(PATH_MARK);
            failed.push(error.path.clone());
        }
    }
    failed
}

fn spent(s: super::budget::Spent) -> Error {
    field_error(FieldError {
        code: s.code(),
        message: s.message(),
    })
}

fn field_error(e: FieldError) -> Error {
    let code = e.code;
    Error::new(e.message).extend_with(|_, ext| ext.set("code", code))
}

/// A field read from the parent object's JSON.
fn parent_field(type_name: &str, f: &FieldDecl, owner: &str, outputs: Outputs) -> Field {
    let ty = f.ty.clone();
    let key = f.name.clone();
    let at: Arc<str> = format!("{type_name}.{}", f.name).into();
    let plugin: Arc<str> = owner.into();
    let owner: Arc<str> = format!("plugin '{owner}'").into();
    let nullable = f.ty.nullable;
    let type_name: Arc<str> = type_name.into();
    let declared = f.directives.auth.clone();
    let field = Field::new(&f.name, type_ref(&f.ty), move |ctx: ResolverContext| {
        // Fields without `@auth` are as open as their parent; only checked
        // when something asks for it (the common case costs nothing).
        let needs_check = declared.is_some()
            || ctx
                .data_opt::<RequestInfo>()
                .is_none_or(|i| !i.access.rules.is_empty());
        if needs_check
            && let Err(e) = guard(
                ctx.data_opt::<RequestInfo>(),
                &plugin,
                &type_name,
                &key,
                declared.as_deref(),
            )
        {
            return match fail(&ctx, nullable, e) {
                Ok(v) => FieldFuture::Value(v),
                Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) }),
            };
        }
        let value = match ctx.parent_value.as_value() {
            Some(Value::Object(map)) => map.get(key.as_str()).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        match shape(value, &ty, &outputs, &at, &owner) {
            Ok(v) => FieldFuture::Value(v),
            Err(message) => {
                let e = field_error(FieldError {
                    code: "BAD_PLUGIN_OUTPUT",
                    message,
                });
                match fail(&ctx, nullable, e) {
                    Ok(v) => FieldFuture::Value(v),
                    Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) }),
                }
            }
        }
    });
    decorate!(field, f)
}

/// A field the plugin resolves: a root field or one it added with `extend type`.
fn plugin_field(
    type_name: &str,
    f: &FieldDecl,
    plugin: &str,
    resolver: Arc<dyn Resolver>,
    outputs: Outputs,
) -> Field {
    let ty = f.ty.clone();
    let parent_type: Arc<str> = type_name.into();
    let field_name: Arc<str> = f.name.as_str().into();
    let at: Arc<str> = format!("{type_name}.{}", f.name).into();
    let plugin: Arc<str> = plugin.into();
    let nullable = f.ty.nullable;
    let args = Arc::new(f.args.clone());
    let is_root = matches!(type_name, "Query" | "Mutation");
    let declared = f.directives.auth.clone();
    let declared_price = f.directives.price_micros;
    let field = Field::new(&f.name, type_ref(&f.ty), move |ctx: ResolverContext| {
        if let Err(e) = guard(
            ctx.data_opt::<RequestInfo>(),
            &plugin,
            &parent_type,
            &field_name,
            declared.as_deref(),
        ) {
            return match fail(&ctx, nullable, e) {
                Ok(v) => FieldFuture::Value(v),
                Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue>, _>(e) }),
            };
        }
        let resolver = resolver.clone();
        let outputs = outputs.clone();
        let args = args.clone();
        let (ty, parent_type, field_name, at, plugin) = (
            ty.clone(),
            parent_type.clone(),
            field_name.clone(),
            at.clone(),
            plugin.clone(),
        );
        let info = ctx.data_opt::<RequestInfo>().cloned();
        let operation = match ctx.query_env.operation.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        let mut arguments = Value::Object(ctx.args.as_index_map().clone())
            .into_json()
            .unwrap_or(serde_json::Value::Null);
        for arg in args.iter() {
            if let Some(v) = arguments.get_mut(&arg.name) {
                apply_input_defaults(v, &arg.ty, &outputs);
            }
        }
        let parent = if is_root {
            None
        } else {
            ctx.parent_value
                .as_value()
                .and_then(|v| v.clone().into_json().ok())
        };
        FieldFuture::new(async move {
            // A priced field holds its price before the plugin runs; each
            // priced field of a document is its own charge, named by its
            // path.
            let hold = match info.as_ref() {
                Some(i) => match &i.billing {
                    Some(billing) => {
                        let price = billing.field_price(&plugin, &at, declared_price);
                        if price > 0 {
                            let path = ctx.path_node.map(|p| p.to_string()).unwrap_or_default();
                            let key = format!(
                                "{}/{path}",
                                i.idempotency_key.as_deref().unwrap_or(&i.request_id)
                            );
                            match billing
                                .hold(
                                    i.caller.principal(),
                                    Some(&key),
                                    &i.request_id,
                                    &plugin,
                                    &at,
                                    price,
                                )
                                .await
                            {
                                Ok(hold) => Some(hold),
                                Err(refused) => {
                                    return fail(&ctx, nullable, payment_error(&refused));
                                }
                            }
                        } else {
                            None
                        }
                    }
                    None => None,
                },
                None => None,
            };
            let outcome = async {
                let request = ResolveRequest {
                    parent_type: parent_type.to_string(),
                    field: field_name.to_string(),
                    arguments,
                    parent,
                    request_id: info
                        .as_ref()
                        .map(|i| i.request_id.clone())
                        .unwrap_or_else(|| Arc::from("-")),
                    operation,
                    caller: info.map(|i| i.caller.clone()).unwrap_or_default(),
                    meter: hold.as_ref().map(crate::billing::Hold::meter),
                };
                // Subscriptions carry no budget: their events are bounded
                // by the topic, not by the document.
                let budget = ctx.data_opt::<CallBudget>();
                if let Some(budget) = budget {
                    budget.take_call().map_err(spent)?;
                }
                let json = resolver.resolve(request).await.map_err(field_error)?;
                if let Some(budget) = budget {
                    budget.take_bytes(json_len(&json)).map_err(spent)?;
                }
                let value = Value::from_json(json).map_err(|e| {
                    field_error(FieldError {
                        code: "BAD_PLUGIN_OUTPUT",
                        message: format!(
                            "plugin '{plugin}' returned a value for {at} that is not GraphQL: {e}"
                        ),
                    })
                })?;
                shape(value, &ty, &outputs, &at, &format!("plugin '{plugin}'")).map_err(|message| {
                    field_error(FieldError {
                        code: "BAD_PLUGIN_OUTPUT",
                        message,
                    })
                })
            }
            .await;
            let outcome = match hold {
                None => outcome,
                Some(hold) => match hold.finish(outcome.is_ok()).await {
                    Ok(_) => outcome,
                    Err(e) => {
                        tracing::error!(error = %e, field = %at, "the ledger could not record a priced field");
                        Err(field_error(FieldError {
                            code: "BILLING_UNAVAILABLE",
                            message: format!(
                                "{at} ran but its charge could not be recorded: {}",
                                e.for_caller()
                            ),
                        }))
                    }
                },
            };
            match outcome {
                Ok(v) => Ok(v),
                Err(e) => fail(&ctx, nullable, e),
            }
        })
    });
    decorate!(field, f)
}

/// A field billing refused: `PAYMENT_REQUIRED` (or `ALREADY_CHARGED`,
/// `IN_FLIGHT`, `BILLING_UNAVAILABLE`) with the price, account and
/// available amount in the error's extensions.
fn payment_error(refused: &crate::billing::Refusal) -> Error {
    let code = refused.code().to_ascii_uppercase();
    let details = refused.details();
    Error::new(refused.to_string()).extend_with(|_, ext| {
        ext.set("code", code);
        if let serde_json::Value::Object(map) = &details {
            for (k, v) in map {
                if let Ok(v) = async_graphql::Value::from_json(v.clone()) {
                    ext.set(k.as_str(), v);
                }
            }
        }
    })
}

/// A subscription field: each message on its topic that matches the
/// field's arguments becomes one result.
fn subscription_field(
    f: &FieldDecl,
    plugin: &str,
    broker: Broker,
    outputs: Outputs,
) -> SubscriptionField {
    let ty = f.ty.clone();
    let plugin: Arc<str> = plugin.into();
    let field_name: Arc<str> = f.name.as_str().into();
    let declared = f.directives.auth.clone();
    let topic: Arc<str> = f.directives.topic.clone().unwrap_or_default().into();
    let at: Arc<str> = format!("Subscription.{}", f.name).into();
    let field = SubscriptionField::new(&f.name, type_ref(&f.ty), move |ctx| {
        let (broker, outputs, ty, topic, at) = (
            broker.clone(),
            outputs.clone(),
            ty.clone(),
            topic.clone(),
            at.clone(),
        );
        let filter: Vec<(String, serde_json::Value)> = ctx
            .args
            .as_index_map()
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Null))
            .filter_map(|(k, v)| Some((k.to_string(), v.clone().into_json().ok()?)))
            .collect();
        let allowed = guard(
            ctx.data_opt::<RequestInfo>(),
            &plugin,
            "Subscription",
            &field_name,
            declared.as_deref(),
        );
        SubscriptionFieldFuture::new(async move {
            allowed?;
            let subscription = broker
                .subscribe(&topic)
                .map_err(|e| Error::new(e.to_string()))?;
            let topic_name = topic.clone();
            Ok(futures_util::stream::unfold(
                Some(subscription),
                move |state| {
                    let (filter, outputs, ty, at, topic) = (
                        filter.clone(),
                        outputs.clone(),
                        ty.clone(),
                        at.clone(),
                        topic_name.clone(),
                    );
                    async move {
                        let mut subscription = state?;
                        loop {
                            match subscription.next().await {
                                Delivery::Message(message) => {
                                    if !matches_filter(&message, &filter) {
                                        continue;
                                    }
                                    // A message that does not fit the field's type is
                                    // skipped: an error item would end the stream, and
                                    // one bad publisher must not end everyone's
                                    // subscriptions.
                                    let item = Value::from_json((*message).clone())
                                        .map_err(|e| e.to_string())
                                        .and_then(|v| {
                                            shape(
                                                v,
                                                &ty,
                                                &outputs,
                                                &at,
                                                &format!("topic '{topic}'"),
                                            )
                                        });
                                    match item {
                                        Ok(v) => {
                                            return Some((
                                                Ok(v.unwrap_or(FieldValue::NULL)),
                                                Some(subscription),
                                            ));
                                        }
                                        Err(e) => {
                                            warn_skipped(&e);
                                            continue;
                                        }
                                    }
                                }
                                Delivery::TooSlow { missed, buffer } => {
                                    let e = Error::new(format!(
                                        "this subscriber fell {missed} messages behind on topic \
                                         '{topic}' (the buffer holds {buffer}) and was dropped; \
                                         subscribe again"
                                    ))
                                    .extend_with(|_, ext| ext.set("code", "SUBSCRIBER_TOO_SLOW"));
                                    return Some((Err(e), None));
                                }
                                Delivery::Closed => return None,
                            }
                        }
                    }
                },
            ))
        })
    });
    decorate!(field, f)
}

/// Warns about a skipped subscription message, at most every ten seconds
/// (one bad message reaches every subscriber of its topic).
fn warn_skipped(reason: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            reason,
            "skipping a pub/sub message that does not fit its subscription field"
        );
    }
}

/// A message passes when, for every argument given, it is an object whose
/// same-named member equals the argument: numbers by value (`3` = `3.0`),
/// and a string argument (an `ID`) also matches the same number.
fn matches_filter(message: &serde_json::Value, filter: &[(String, serde_json::Value)]) -> bool {
    use serde_json::Value as J;
    filter.iter().all(|(k, want)| {
        message.get(k).is_some_and(|got| match (got, want) {
            (J::Number(a), J::Number(b)) => a.as_f64() == b.as_f64(),
            (J::Number(a), J::String(b)) | (J::String(b), J::Number(a)) => a.to_string() == *b,
            _ => got == want,
        })
    })
}

/// Checks `value` against `ty` and wraps it for the executor. `Ok(None)` is
/// null for a nullable position.
fn shape<'a>(
    value: Value,
    ty: &Type,
    outputs: &BTreeMap<String, Output>,
    at: &str,
    from: &str,
) -> Result<Option<FieldValue<'a>>, String> {
    if matches!(value, Value::Null) {
        return if ty.nullable {
            Ok(None)
        } else {
            Err(format!("{at} is non-null ({ty}) but {from} returned null"))
        };
    }
    match &ty.base {
        BaseType::List(item) => {
            let Value::List(items) = value else {
                return Err(format!(
                    "{at} is a list ({ty}) but {from} returned {}",
                    kind_of(&value)
                ));
            };
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                match shape(v, item, outputs, at, from)? {
                    Some(v) => out.push(v),
                    None if is_leaf(item, outputs) => out.push(FieldValue::NULL),
                    None => {
                        return Err(format!(
                            "{at}: {from} returned null inside a list of {item}; Kiln supports \
                             null list items only for scalar types"
                        ));
                    }
                }
            }
            Ok(Some(FieldValue::list(out)))
        }
        BaseType::Named(name) => {
            let wrong = |expected: &str, value: &Value| {
                Err(format!(
                    "{at} is {expected} ({ty}) but {from} returned {}",
                    kind_of(value)
                ))
            };
            match outputs.get(name.as_str()) {
                Some(Output::Builtin("Int")) => match &value {
                    Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {}
                    _ => return wrong("a 32-bit integer", &value),
                },
                Some(Output::Builtin("Float")) => {
                    if !matches!(value, Value::Number(_)) {
                        return wrong("a number", &value);
                    }
                }
                Some(Output::Builtin("String")) => {
                    if !matches!(value, Value::String(_)) {
                        return wrong("a string", &value);
                    }
                }
                Some(Output::Builtin("Boolean")) => {
                    if !matches!(value, Value::Boolean(_)) {
                        return wrong("a boolean", &value);
                    }
                }
                Some(Output::Builtin(_)) => match &value {
                    // ID: a string, or an integer serialised as one.
                    Value::String(_) => {}
                    Value::Number(n) if n.is_i64() || n.is_u64() => {
                        return Ok(Some(FieldValue::value(Value::String(n.to_string()))));
                    }
                    _ => return wrong("an ID", &value),
                },
                Some(Output::Custom) => {}
                Some(Output::Enum(values)) => match &value {
                    Value::String(s) if values.contains(s.as_str()) => {}
                    Value::Enum(n) if values.contains(n.as_str()) => {}
                    _ => {
                        return Err(format!(
                            "{at} is enum {name} but {from} returned {}; expected one of {}",
                            kind_of(&value),
                            values.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                },
                Some(Output::Object | Output::Input(_)) => {
                    if !matches!(value, Value::Object(_)) {
                        return wrong("an object", &value);
                    }
                }
                Some(Output::Abstract(possible)) => {
                    let type_name = match &value {
                        Value::Object(map) => match map.get("__typename") {
                            Some(Value::String(t)) => t.clone(),
                            _ => {
                                return Err(format!(
                                    "{at} is the abstract type {name}; {from} must name the \
                                     concrete type in \"__typename\" (one of {})",
                                    possible.iter().cloned().collect::<Vec<_>>().join(", ")
                                ));
                            }
                        },
                        other => return wrong("an object", other),
                    };
                    if !possible.contains(&type_name) {
                        return Err(format!(
                            "{at}: \"__typename\": \"{type_name}\" from {from} is not one of {}",
                            possible.iter().cloned().collect::<Vec<_>>().join(", ")
                        ));
                    }
                    return Ok(Some(FieldValue::value(value).with_type(type_name)));
                }
                None => return Err(format!("{at}: unknown type {name}")),
            }
            Ok(Some(FieldValue::value(value)))
        }
    }
}

/// Fills in the defaults of input object fields the client left out: the
/// dynamic executor applies argument defaults but not nested ones.
fn apply_input_defaults(
    value: &mut serde_json::Value,
    ty: &Type,
    outputs: &BTreeMap<String, Output>,
) {
    match (&ty.base, value) {
        (BaseType::List(item), serde_json::Value::Array(items)) => {
            for v in items {
                apply_input_defaults(v, item, outputs);
            }
        }
        (BaseType::Named(name), serde_json::Value::Object(map)) => {
            let Some(Output::Input(fields)) = outputs.get(name.as_str()) else {
                return;
            };
            for field in fields.iter() {
                match map.get_mut(&field.name) {
                    Some(v) => apply_input_defaults(v, &field.ty, outputs),
                    None => {
                        if let Some(default) =
                            field.default.clone().and_then(|d| d.into_json().ok())
                        {
                            map.insert(field.name.clone(), default);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn is_leaf(ty: &Type, outputs: &BTreeMap<String, Output>) -> bool {
    match &ty.base {
        BaseType::Named(n) => matches!(
            outputs.get(n.as_str()),
            Some(Output::Builtin(_) | Output::Custom)
        ),
        BaseType::List(_) => false,
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Boolean(b) => format!("{b}"),
        Value::Binary(_) => "binary data".into(),
        Value::Enum(e) => format!("the enum value {e}"),
        Value::List(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::{merge::merge, sdl::parse};

    /// A plugin stand-in: answers from a function of the request.
    type Answer = fn(&ResolveRequest) -> Result<serde_json::Value, FieldError>;

    struct Fake(Answer);

    impl Resolver for Fake {
        fn resolve(
            &self,
            request: ResolveRequest,
        ) -> BoxFuture<'_, Result<serde_json::Value, FieldError>> {
            let answer = (self.0)(&request);
            Box::pin(async move { answer })
        }
    }

    fn schema(plugins: &[(&str, &str, Answer)]) -> (Schema, Broker) {
        let fragments: Vec<(String, crate::graphql::sdl::Fragment)> = plugins
            .iter()
            .map(|(n, s, _)| (n.to_string(), parse(s).unwrap()))
            .collect();
        let merged = merge(fragments.iter().map(|(n, f)| (n.as_str(), f))).unwrap();
        let resolvers = plugins
            .iter()
            .map(|(n, _, f)| (n.to_string(), Arc::new(Fake(*f)) as Arc<dyn Resolver>))
            .collect();
        let broker = Broker::new(8, 1 << 16);
        let built = build(
            &merged,
            &resolvers,
            &broker,
            &GraphqlConfig::default(),
            &Limits::default(),
        )
        .unwrap();
        (built.schema, broker)
    }

    const SHOP: &str = r#"
        scalar Money
        enum Kind { BOOK FOOD }
        interface Named { name: String! }
        type Product implements Named { id: ID!, name: String!, price: Money, kind: Kind!, tags: [String]!, count: Int }
        type Shelf implements Named { name: String! }
        union Thing = Product | Shelf
        input Filter { kind: Kind, max: Int = 10 }
        extend type Query {
          product(id: ID!): Product
          products(filter: Filter): [Product!]!
          things: [Thing!]!
          named: Named
        }
        extend type Mutation { rename(id: ID!, name: String!): Product! @price(micros: 5) }
        extend type Subscription { priceChanged(sku: String): Product @topic(name: "prices") }
    "#;

    fn shop(r: &ResolveRequest) -> Result<serde_json::Value, FieldError> {
        use serde_json::json;
        let book = json!({"id": 7, "name": "Dune", "price": "9.99", "kind": "BOOK", "tags": ["sf", null], "count": 3});
        match (r.parent_type.as_str(), r.field.as_str()) {
            ("Query", "product") if r.arguments["id"] == "7" => Ok(book),
            ("Query", "product") if r.arguments["id"] == "bad" => {
                Ok(json!({"id": 1, "name": null, "kind": "BOOK", "tags": []}))
            }
            ("Query", "product") if r.arguments["id"] == "big" => {
                Ok(json!({"id": 1, "name": "x", "kind": "BOOK", "tags": [], "count": 1u64 << 40}))
            }
            ("Query", "product") if r.arguments["id"] == "enum" => {
                Ok(json!({"id": 1, "name": "x", "kind": "TOY", "tags": []}))
            }
            ("Query", "product") => Err(FieldError {
                code: "NOT_FOUND",
                message: format!("no product {}", r.arguments["id"]),
            }),
            ("Query", "products") => Ok(
                json!([book, {"id": "8", "name": "Salt", "kind": "FOOD", "tags": []}, r.arguments]),
            ),
            ("Query", "things") => Ok(
                json!([{"__typename": "Shelf", "name": "top"}, {"__typename": "Product", "id": 1, "name": "a", "kind": "FOOD", "tags": []}]),
            ),
            ("Query", "named") => Ok(json!({"name": "untyped"})),
            ("Mutation", "rename") => Ok(
                json!({"id": r.arguments["id"], "name": r.arguments["name"], "kind": "BOOK", "tags": []}),
            ),
            _ => Err(FieldError {
                code: "INTERNAL",
                message: "unexpected".into(),
            }),
        }
    }

    fn reviews(r: &ResolveRequest) -> Result<serde_json::Value, FieldError> {
        Ok(serde_json::json!([format!(
            "{} is great",
            r.parent.as_ref().unwrap()["name"].as_str().unwrap()
        )]))
    }

    /// A request from an anonymous caller under `default = "public"`.
    fn open_request(query: &str) -> async_graphql::Request {
        let access: AccessConfig = toml::from_str("default = \"public\"").unwrap();
        async_graphql::Request::new(query).data(RequestInfo {
            request_id: "test".into(),
            caller: Caller::default(),
            access: Arc::new(access),
            billing: None,
            idempotency_key: None,
        })
    }

    async fn run(schema: &Schema, query: &str) -> serde_json::Value {
        let mut response = schema.execute(open_request(query)).await;
        take_non_null_failures(&mut response);
        serde_json::to_value(response).unwrap()
    }

    #[tokio::test]
    async fn root_fields_call_the_plugin_and_nested_fields_read_its_json() {
        let (s, _) = schema(&[("shop", SHOP, shop)]);
        let r = run(
            &s,
            r#"{ product(id: "7") { id name price kind tags count __typename } }"#,
        )
        .await;
        assert_eq!(
            r["data"]["product"],
            serde_json::json!({"id": "7", "name": "Dune", "price": "9.99", "kind": "BOOK", "tags": ["sf", null], "count": 3, "__typename": "Product"})
        );
        assert!(r.get("errors").is_none(), "{r}");
    }

    #[tokio::test]
    async fn arguments_reach_the_plugin_as_json_with_defaults_and_enums_as_strings() {
        let (s, _) = schema(&[("shop", SHOP, shop)]);
        let r = run(&s, r#"{ products(filter: {kind: FOOD}) { name } }"#).await;
        // The third "product" is the arguments echoed back: not a Product, so
        // its missing non-null name is an error for that item.
        let errors = r["errors"].as_array().unwrap();
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .contains("Product.name is non-null"),
            "{r}"
        );
        assert_eq!(
            errors[0]["path"],
            serde_json::json!(["products", 2, "name"])
        );

        let (s, _) = schema(&[(
            "echo",
            "input F { kind: String, max: Int = 10 } extend type Query { echo(f: F): String }",
            |r| Ok(serde_json::Value::String(r.arguments.to_string())),
        )]);
        let r = run(&s, r#"{ echo(f: {kind: "x"}) }"#).await;
        assert_eq!(r["data"]["echo"], r#"{"f":{"kind":"x","max":10}}"#);
    }

    #[tokio::test]
    async fn plugin_errors_become_graphql_errors_with_path_and_code() {
        let (s, _) = schema(&[("shop", SHOP, shop)]);
        let r = run(
            &s,
            r#"{ a: product(id: "1") { id } b: product(id: "7") { id } }"#,
        )
        .await;
        assert_eq!(r["data"], serde_json::json!({"a": null, "b": {"id": "7"}}));
        let e = &r["errors"][0];
        assert_eq!(e["message"], "no product \"1\"");
        assert_eq!(e["path"], serde_json::json!(["a"]));
        assert_eq!(e["extensions"]["code"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn wrong_plugin_output_is_a_field_error_naming_the_plugin() {
        let (s, _) = schema(&[("shop", SHOP, shop)]);
        let cases = [
            (
                "bad",
                "name",
                "Product.name is non-null (String!) but plugin 'shop' returned null",
            ),
            (
                "big",
                "count",
                "Product.count is a 32-bit integer (Int) but plugin 'shop' returned the number 1099511627776",
            ),
            (
                "enum",
                "kind",
                "Product.kind is enum Kind but plugin 'shop' returned the string \"TOY\"; expected one of BOOK, FOOD",
            ),
        ];
        for (id, field, expected) in cases {
            let r = run(&s, &format!(r#"{{ product(id: "{id}") {{ {field} }} }}"#)).await;
            assert_eq!(r["errors"][0]["message"], expected, "{r}");
            assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_PLUGIN_OUTPUT");
        }
    }

    #[tokio::test]
    async fn abstract_types_use_typename_from_the_plugin() {
        let (s, _) = schema(&[("shop", SHOP, shop)]);
        let r = run(
            &s,
            r#"{ things { __typename ... on Shelf { name } ... on Product { kind } } }"#,
        )
        .await;
        assert_eq!(
            r["data"]["things"],
            serde_json::json!([{"__typename": "Shelf", "name": "top"}, {"__typename": "Product", "kind": "FOOD"}])
        );
        let r = run(&s, "{ named { name } }").await;
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("must name the concrete type in \"__typename\""),
            "{r}"
        );
    }

    #[tokio::test]
    async fn extension_fields_call_their_plugin_with_the_parent() {
        let (s, _) = schema(&[
            ("shop", SHOP, shop),
            (
                "reviews",
                "extend type Product { reviews: [String!]! }",
                reviews,
            ),
        ]);
        let r = run(&s, r#"{ product(id: "7") { name reviews } }"#).await;
        assert_eq!(
            r["data"]["product"]["reviews"],
            serde_json::json!(["Dune is great"])
        );
    }

    #[test]
    fn subscription_filters_compare_numbers_by_value_and_ids_as_text() {
        use serde_json::json;
        let f = |k: &str, v: serde_json::Value| vec![(k.to_string(), v)];
        assert!(matches_filter(&json!({"a": 3}), &f("a", json!(3.0))));
        assert!(matches_filter(&json!({"id": 7}), &f("id", json!("7"))));
        assert!(matches_filter(&json!({"id": "7"}), &f("id", json!("7"))));
        assert!(!matches_filter(&json!({"id": "8"}), &f("id", json!("7"))));
        assert!(!matches_filter(&json!({"b": 1}), &f("a", json!(1))));
        assert!(!matches_filter(&json!(5), &f("a", json!(5))));
        assert!(matches_filter(&json!(5), &[]));
    }

    #[tokio::test]
    async fn mutations_run_and_subscriptions_follow_their_topic_with_filters() {
        let (s, broker) = schema(&[("shop", SHOP, shop)]);
        let r = run(
            &s,
            r#"mutation { rename(id: "3", name: "New") { id name } }"#,
        )
        .await;
        assert_eq!(
            r["data"]["rename"],
            serde_json::json!({"id": "3", "name": "New"})
        );

        use futures_util::StreamExt;
        let mut stream = s.execute_stream(open_request(
            r#"subscription { priceChanged(sku: "a") { name } }"#,
        ));
        // The subscription registers with the broker when first polled.
        let first = tokio::spawn(async move {
            stream
                .next()
                .await
                .map(|r| serde_json::to_value(r).unwrap())
        });
        while broker.topic_count() == 0 {
            tokio::task::yield_now().await;
        }
        broker
            .publish(
                "prices",
                r#"{"sku":"b","name":"skipped","kind":"BOOK","tags":[]}"#,
            )
            .unwrap();
        broker
            .publish(
                "prices",
                r#"{"sku":"a","name":"kept","kind":"BOOK","tags":[]}"#,
            )
            .unwrap();
        let got = first.await.unwrap().unwrap();
        assert_eq!(got["data"]["priceChanged"]["name"], "kept", "{got}");
    }
}
