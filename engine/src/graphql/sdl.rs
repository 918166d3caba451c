//! One plugin's SDL fragment, parsed and checked. Pure functions over the
//! text the guest returned: every refusal names the type and field and says
//! what to write instead.
//!
//! What a fragment may contain: `extend type Query|Mutation|Subscription`,
//! object, interface, union, enum, input and scalar definitions, and
//! `extend type X` for an object type `X` (defined here or by another
//! plugin), whose new fields this plugin resolves. Directives: `@auth`,
//! `@price` and `@deprecated` on fields, `@topic` on every subscription field,
//! `@deprecated` on enum values and arguments, `@specifiedBy` on scalars.

use async_graphql::Value;
use async_graphql::parser::types::{
    ConstDirective, FieldDefinition, InputValueDefinition, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Positioned};

use crate::streams::broker::check_topic;

pub const MAX_SDL: usize = 256 * 1024;
pub const ROOT_TYPES: [&str; 3] = ["Query", "Mutation", "Subscription"];
const BUILTIN_SCALARS: [&str; 5] = ["Int", "Float", "String", "Boolean", "ID"];

/// A checked fragment: the plugin's type definitions and extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    pub types: Vec<TypeDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeDecl {
    pub name: String,
    /// `extend type X`: fields added to a type defined elsewhere (or a root).
    pub extend: bool,
    pub description: Option<String>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Object {
        implements: Vec<String>,
        fields: Vec<FieldDecl>,
    },
    Interface {
        fields: Vec<FieldDecl>,
    },
    Union {
        members: Vec<String>,
    },
    Enum {
        values: Vec<EnumValueDecl>,
    },
    Input {
        fields: Vec<InputDecl>,
    },
    Scalar {
        specified_by: Option<String>,
    },
}

impl Kind {
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Object { .. } => "type",
            Kind::Interface { .. } => "interface",
            Kind::Union { .. } => "union",
            Kind::Enum { .. } => "enum",
            Kind::Input { .. } => "input",
            Kind::Scalar { .. } => "scalar",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub name: String,
    pub description: Option<String>,
    /// The type as written, e.g. `[Product!]!`.
    pub ty: async_graphql::parser::types::Type,
    pub args: Vec<InputDecl>,
    pub directives: FieldDirectives,
}

/// What the host understands about a field, kept for access and billing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldDirectives {
    /// `@auth`: none = public; `Some([])` = any authenticated caller;
    /// `Some(roles)` = a caller with one of the roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Vec<String>>,
    /// `@price(micros: N)`: what one call costs, in millionths of the unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_micros: Option<u64>,
    /// `@topic(name: "...")`: the pub/sub topic feeding a subscription field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `@deprecated(reason: "...")`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    pub name: String,
    pub description: Option<String>,
    pub ty: async_graphql::parser::types::Type,
    pub default: Option<Value>,
    pub deprecated: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnumValueDecl {
    pub name: String,
    pub description: Option<String>,
    pub deprecated: Option<String>,
}

/// Parses and checks `sdl`. Empty (or blank) text is an empty fragment.
pub fn parse(sdl: &str) -> Result<Fragment, String> {
    if sdl.len() > MAX_SDL {
        return Err(format!(
            "the SDL fragment is {} bytes; the limit is {MAX_SDL}",
            sdl.len()
        ));
    }
    if sdl.trim().is_empty() {
        return Ok(Fragment { types: Vec::new() });
    }
    let doc = async_graphql::parser::parse_schema(sdl)
        .map_err(|e| format!("the SDL does not parse: {e}"))?;
    let mut types = Vec::new();
    for def in doc.definitions {
        let def = match def {
            TypeSystemDefinition::Type(t) => t.node,
            TypeSystemDefinition::Schema(s) => {
                return Err(format!(
                    "line {}: `schema {{ ... }}` is not allowed; the host names the roots Query, \
                     Mutation and Subscription: use `extend type Query {{ ... }}`",
                    s.pos.line
                ));
            }
            TypeSystemDefinition::Directive(d) => {
                return Err(format!(
                    "line {}: defining directive @{} is not allowed; Kiln understands @auth, \
                     @price, @topic, @deprecated and @specifiedBy",
                    d.pos.line, d.node.name.node
                ));
            }
        };
        let name = def.name.node.to_string();
        if name.starts_with("__") {
            return Err(format!("type {name}: names starting with __ are reserved"));
        }
        if BUILTIN_SCALARS.contains(&name.as_str()) {
            return Err(format!("type {name}: {name} is a built-in scalar"));
        }
        let is_root = ROOT_TYPES.contains(&name.as_str());
        if is_root && !def.extend {
            return Err(format!(
                "`type {name}` would replace the shared root type; write `extend type {name} {{ ... }}`"
            ));
        }
        let description = def.description.map(|d| d.node);
        let kind = match def.kind {
            TypeKind::Object(o) => {
                let fields = fields(&name, o.fields, name == "Subscription")?;
                if is_root && !o.implements.is_empty() {
                    return Err(format!(
                        "type {name}: root types cannot implement interfaces"
                    ));
                }
                Kind::Object {
                    implements: o
                        .implements
                        .into_iter()
                        .map(|i| i.node.to_string())
                        .collect(),
                    fields,
                }
            }
            TypeKind::Interface(i) => Kind::Interface {
                fields: fields(&name, i.fields, false)?,
            },
            TypeKind::Union(u) => Kind::Union {
                members: u.members.into_iter().map(|m| m.node.to_string()).collect(),
            },
            TypeKind::Enum(e) => {
                let mut values = Vec::new();
                for v in e.values {
                    let v = v.node;
                    let at = format!("enum value {name}.{}", v.value.node);
                    values.push(EnumValueDecl {
                        name: v.value.node.to_string(),
                        description: v.description.map(|d| d.node),
                        deprecated: only_deprecated(&at, &v.directives)?,
                    });
                }
                Kind::Enum { values }
            }
            TypeKind::InputObject(i) => {
                let mut fields = Vec::new();
                for f in i.fields {
                    fields.push(input(&format!("input field {name}"), f.node)?);
                }
                Kind::Input { fields }
            }
            TypeKind::Scalar => Kind::Scalar {
                specified_by: specified_by(&name, &def.directives)?,
            },
        };
        if !matches!(kind, Kind::Scalar { .. })
            && let Some(d) = def.directives.first()
        {
            return Err(unknown_directive(
                &format!("type {name}"),
                &d.node.name.node,
            ));
        }
        if def.extend && !matches!(kind, Kind::Object { .. }) {
            return Err(format!(
                "extend {} {name}: only object types can be extended",
                kind.word()
            ));
        }
        types.push(TypeDecl {
            name,
            extend: def.extend,
            description,
            kind,
        });
    }
    Ok(Fragment { types })
}

fn fields(
    type_name: &str,
    defs: Vec<Positioned<FieldDefinition>>,
    subscription: bool,
) -> Result<Vec<FieldDecl>, String> {
    let mut out: Vec<FieldDecl> = Vec::new();
    for def in defs {
        let def = def.node;
        let name = def.name.node.to_string();
        let at = format!("field {type_name}.{name}");
        if name.starts_with("__") {
            return Err(format!("{at}: names starting with __ are reserved"));
        }
        if out.iter().any(|f| f.name == name) {
            return Err(format!("{at} is declared twice"));
        }
        let mut args = Vec::new();
        for a in def.arguments {
            args.push(input(&format!("argument of {at}"), a.node)?);
        }
        let directives = field_directives(&at, &def.directives)?;
        match (&directives.topic, subscription) {
            (None, true) => {
                return Err(format!(
                    "{at}: every subscription field needs @topic(name: \"...\") naming the \
                     pub/sub topic that feeds it"
                ));
            }
            (Some(_), false) => {
                return Err(format!("{at}: @topic belongs on subscription fields only"));
            }
            _ => {}
        }
        out.push(FieldDecl {
            name,
            description: def.description.map(|d| d.node),
            ty: def.ty.node,
            args,
            directives,
        });
    }
    Ok(out)
}

fn input(at: &str, def: InputValueDefinition) -> Result<InputDecl, String> {
    let name = def.name.node.to_string();
    let at = format!("{at} {name}");
    Ok(InputDecl {
        deprecated: only_deprecated(&at, &def.directives)?,
        name,
        description: def.description.map(|d| d.node),
        ty: def.ty.node,
        default: def.default_value.map(|d| d.node),
    })
}

fn field_directives(
    at: &str,
    directives: &[Positioned<ConstDirective>],
) -> Result<FieldDirectives, String> {
    let mut out = FieldDirectives::default();
    for d in directives {
        let d = &d.node;
        let name = d.name.node.as_str();
        let args = Args::new(at, d)?;
        match name {
            "auth" => {
                args.only(&["roles"])?;
                let roles = match args.get("roles") {
                    None => Vec::new(),
                    Some(Value::List(items)) => items
                        .iter()
                        .map(|r| match r {
                            Value::String(s) if !s.is_empty() => Ok(s.clone()),
                            _ => Err(format!("{at}: @auth(roles:) takes non-empty strings")),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
                    Some(_) => return Err(format!("{at}: @auth(roles:) takes a list of strings")),
                };
                set_once(at, "auth", &mut out.auth, roles)?;
            }
            "price" => {
                args.only(&["micros"])?;
                let micros = match args.get("micros") {
                    Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                        format!("{at}: @price(micros:) takes a whole number of at least 0")
                    })?,
                    _ => return Err(format!("{at}: @price needs micros: N (an integer)")),
                };
                set_once(at, "price", &mut out.price_micros, micros)?;
            }
            "topic" => {
                args.only(&["name"])?;
                let topic = match args.get("name") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(format!("{at}: @topic needs name: \"...\" (a string)")),
                };
                check_topic(&topic).map_err(|e| format!("{at}: @topic: {e}"))?;
                set_once(at, "topic", &mut out.topic, topic)?;
            }
            "deprecated" => {
                args.only(&["reason"])?;
                set_once(at, "deprecated", &mut out.deprecated, args.reason())?;
            }
            other => return Err(unknown_directive(at, other)),
        }
    }
    Ok(out)
}

fn only_deprecated(
    at: &str,
    directives: &[Positioned<ConstDirective>],
) -> Result<Option<String>, String> {
    let mut out = None;
    for d in directives {
        let d = &d.node;
        if d.name.node != "deprecated" {
            return Err(unknown_directive(at, &d.name.node));
        }
        let args = Args::new(at, d)?;
        args.only(&["reason"])?;
        set_once(at, "deprecated", &mut out, args.reason())?;
    }
    Ok(out)
}

fn specified_by(
    name: &str,
    directives: &[Positioned<ConstDirective>],
) -> Result<Option<String>, String> {
    let at = format!("scalar {name}");
    let mut out = None;
    for d in directives {
        let d = &d.node;
        if d.name.node != "specifiedBy" {
            return Err(unknown_directive(&at, &d.name.node));
        }
        let args = Args::new(&at, d)?;
        args.only(&["url"])?;
        let Some(Value::String(url)) = args.get("url") else {
            return Err(format!("{at}: @specifiedBy needs url: \"...\""));
        };
        set_once(&at, "specifiedBy", &mut out, url.clone())?;
    }
    Ok(out)
}

fn set_once<T>(at: &str, directive: &str, slot: &mut Option<T>, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{at}: @{directive} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn unknown_directive(at: &str, name: &str) -> String {
    format!(
        "{at}: unknown directive @{name}; Kiln understands @auth(roles: [...]) and \
         @price(micros: N) on fields, @topic(name: \"...\") on subscription fields, \
         @deprecated and @specifiedBy"
    )
}

/// A directive's arguments, checked against what it accepts.
struct Args<'a> {
    at: &'a str,
    directive: &'a str,
    values: Vec<(&'a Name, &'a Value)>,
}

impl<'a> Args<'a> {
    fn new(at: &'a str, d: &'a ConstDirective) -> Result<Self, String> {
        Ok(Args {
            at,
            directive: d.name.node.as_str(),
            values: d
                .arguments
                .iter()
                .map(|(n, v)| (&n.node, &v.node))
                .collect(),
        })
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .values
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
        {
            Some((n, _)) => Err(format!(
                "{}: @{} has no argument '{n}' (it takes: {})",
                self.at,
                self.directive,
                allowed.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.values
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| *v)
    }

    fn reason(&self) -> String {
        match self.get("reason") {
            Some(Value::String(s)) => s.clone(),
            _ => "No longer supported".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(sdl: &str) -> String {
        parse(sdl).expect_err(sdl)
    }

    #[test]
    fn a_full_fragment_parses() {
        let f = parse(
            r#"
            "A thing for sale"
            type Product { id: ID!, name: String!, price: Money, tags: [String!]!, kind: Kind }
            scalar Money @specifiedBy(url: "https://example.com/money")
            enum Kind { BOOK, FOOD @deprecated(reason: "gone") }
            input NewProduct { name: String!, price: Money = 0 }
            interface Node { id: ID! }
            union Found = Product
            extend type Query {
              product(id: ID!): Product @auth(roles: ["reader", "admin"]) @price(micros: 250)
              products(first: Int = 10): [Product!]! @auth
            }
            extend type Mutation { add(input: NewProduct!): Product! }
            extend type Subscription { priceChanged(sku: String): Product @topic(name: "prices") }
            "#,
        )
        .unwrap();
        assert_eq!(f.types.len(), 9);
        let query = f.types.iter().find(|t| t.name == "Query").unwrap();
        let Kind::Object { fields, .. } = &query.kind else {
            panic!()
        };
        assert_eq!(
            fields[0].directives.auth,
            Some(vec!["reader".into(), "admin".into()])
        );
        assert_eq!(fields[0].directives.price_micros, Some(250));
        assert_eq!(fields[1].directives.auth, Some(vec![]));
        assert_eq!(fields[1].ty.to_string(), "[Product!]!");
        let sub = f.types.iter().find(|t| t.name == "Subscription").unwrap();
        let Kind::Object { fields, .. } = &sub.kind else {
            panic!()
        };
        assert_eq!(fields[0].directives.topic.as_deref(), Some("prices"));
    }

    #[test]
    fn empty_text_is_an_empty_fragment() {
        assert!(parse("  \n").unwrap().types.is_empty());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let cases = [
            ("type Query { a: Int }", "write `extend type Query"),
            (
                "extend type Query { a: Int @cached }",
                "unknown directive @cached",
            ),
            (
                "extend type Query { a: Int @auth(role: \"x\") }",
                "no argument 'role'",
            ),
            ("extend type Query { a: Int @price }", "@price needs micros"),
            (
                "extend type Query { a: Int @price(micros: -1) }",
                "at least 0",
            ),
            (
                "extend type Query { a: Int @auth @auth }",
                "@auth is given twice",
            ),
            ("extend type Subscription { a: Int }", "needs @topic"),
            (
                "extend type Query { a: Int @topic(name: \"t\") }",
                "subscription fields only",
            ),
            (
                "extend type Subscription { a: Int @topic(name: \"a b\") }",
                "contains ' '",
            ),
            ("schema { query: Q }", "`schema { ... }` is not allowed"),
            ("directive @x on FIELD_DEFINITION", "defining directive @x"),
            ("type String { a: Int }", "built-in scalar"),
            (
                "extend enum Kind { C }",
                "only object types can be extended",
            ),
            (
                "type A @key(fields: \"id\") { id: ID }",
                "unknown directive @key",
            ),
            ("enum E { A @auth }", "unknown directive @auth"),
            ("scalar S @auth", "unknown directive @auth"),
            ("extend type Query { a: Int, a: Int }", "declared twice"),
            ("extend type Query { a(: Int }", "does not parse"),
            ("type __X { a: Int }", "reserved"),
        ];
        for (sdl, expected) in cases {
            let e = err(sdl);
            assert!(
                e.contains(expected),
                "{sdl}\n  gave: {e}\n  expected: {expected}"
            );
        }
        assert!(err(&" ".repeat(MAX_SDL + 1)).contains("limit"));
    }
}
