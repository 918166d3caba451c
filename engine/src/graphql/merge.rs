//! Merging every plugin's fragment into one schema model. Pure: the input is
//! `(plugin name, fragment)` in load order; the output says, for every field,
//! who resolves it. A conflict names both plugins.
//!
//! Rules:
//! - Root fields (`extend type Query|Mutation|Subscription`) belong to the
//!   plugin that declares them; the same root field from two plugins is a
//!   conflict.
//! - A named type may be defined by several plugins only if the definitions
//!   are identical (descriptions aside); otherwise one plugin defines it and
//!   the others `extend type` it.
//! - `extend type X` adds fields to object type `X` that the extending plugin
//!   resolves, given the parent object; a field name already on `X` is a
//!   conflict.
//! - Fields of defined types are read from the parent object's JSON by name.

use std::collections::BTreeMap;

use super::sdl::{Fragment, Kind, ROOT_TYPES, TypeDecl};

/// Who produces a field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Read by name from the parent object's JSON.
    Parent,
    /// Resolved by calling this plugin's `resolve`.
    Plugin(String),
}

#[derive(Debug, Clone)]
pub struct MergedType {
    /// The defining plugin; for root types, the first contributor.
    pub owner: String,
    /// The definition with every extension's fields appended.
    pub decl: TypeDecl,
    /// For object types: who resolves each field.
    pub sources: BTreeMap<String, Source>,
}

#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub types: BTreeMap<String, MergedType>,
}

pub fn merge<'a>(
    fragments: impl IntoIterator<Item = (&'a str, &'a Fragment)>,
) -> Result<Merged, String> {
    let fragments: Vec<(&str, &Fragment)> = fragments.into_iter().collect();
    let mut merged = Merged::default();

    // Definitions first, so extensions may come from plugins loaded earlier.
    for (plugin, fragment) in &fragments {
        for decl in fragment.types.iter().filter(|t| !t.extend) {
            match merged.types.get(&decl.name) {
                Some(existing) if same_definition(&existing.decl, decl) => {}
                Some(existing) => {
                    return Err(format!(
                        "{} {} is defined differently by plugin '{}' and plugin '{plugin}'; \
                         define it in one plugin and use `extend type` in the other",
                        decl.kind.word(),
                        decl.name,
                        existing.owner
                    ));
                }
                None => {
                    let sources = match &decl.kind {
                        Kind::Object { fields, .. } => fields
                            .iter()
                            .map(|f| (f.name.clone(), Source::Parent))
                            .collect(),
                        _ => BTreeMap::new(),
                    };
                    merged.types.insert(
                        decl.name.clone(),
                        MergedType {
                            owner: plugin.to_string(),
                            decl: decl.clone(),
                            sources,
                        },
                    );
                }
            }
        }
    }

    for (plugin, fragment) in &fragments {
        for decl in fragment.types.iter().filter(|t| t.extend) {
            let Kind::Object {
                fields: added,
                implements: added_interfaces,
            } = &decl.kind
            else {
                continue; // sdl::parse allows extending object types only.
            };
            let is_root = ROOT_TYPES.contains(&decl.name.as_str());
            let target = match merged.types.get_mut(&decl.name) {
                Some(t) => t,
                None if is_root => merged.types.entry(decl.name.clone()).or_insert(MergedType {
                    owner: plugin.to_string(),
                    decl: TypeDecl {
                        name: decl.name.clone(),
                        extend: false,
                        description: None,
                        kind: Kind::Object {
                            implements: Vec::new(),
                            fields: Vec::new(),
                        },
                    },
                    sources: BTreeMap::new(),
                }),
                None => {
                    return Err(format!(
                        "plugin '{plugin}' extends type {}, which no loaded plugin defines",
                        decl.name
                    ));
                }
            };
            let owner = target.owner.clone();
            let Kind::Object { fields, implements } = &mut target.decl.kind else {
                return Err(format!(
                    "plugin '{plugin}' extends {} {}, defined by plugin '{owner}'; only object \
                     types can be extended",
                    target.decl.kind.word(),
                    decl.name
                ));
            };
            for i in added_interfaces {
                if !implements.contains(i) {
                    implements.push(i.clone());
                }
            }
            for field in added {
                if let Some(existing) = target.sources.get(&field.name) {
                    let holder = match existing {
                        Source::Plugin(p) => p.as_str(),
                        Source::Parent => owner.as_str(),
                    };
                    return Err(format!(
                        "field {}.{} is declared by both plugin '{holder}' and plugin '{plugin}'; \
                         rename one of them",
                        decl.name, field.name
                    ));
                }
                fields.push(field.clone());
                target
                    .sources
                    .insert(field.name.clone(), Source::Plugin(plugin.to_string()));
            }
        }
    }
    Ok(merged)
}

/// Two definitions are the same type if everything but descriptions matches.
fn same_definition(a: &TypeDecl, b: &TypeDecl) -> bool {
    fn strip(t: &TypeDecl) -> TypeDecl {
        let mut t = t.clone();
        t.description = None;
        match &mut t.kind {
            Kind::Object { fields, .. } | Kind::Interface { fields } => {
                for f in fields {
                    f.description = None;
                    for a in &mut f.args {
                        a.description = None;
                    }
                }
            }
            Kind::Input { fields } => {
                for f in fields {
                    f.description = None;
                }
            }
            Kind::Enum { values } => {
                for v in values {
                    v.description = None;
                }
            }
            Kind::Union { .. } | Kind::Scalar { .. } => {}
        }
        t
    }
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::sdl::parse;

    fn run(plugins: &[(&str, &str)]) -> Result<Merged, String> {
        let fragments: Vec<(String, Fragment)> = plugins
            .iter()
            .map(|(p, s)| (p.to_string(), parse(s).unwrap()))
            .collect();
        merge(fragments.iter().map(|(p, f)| (p.as_str(), f)))
    }

    fn fields(m: &Merged, ty: &str) -> Vec<(String, Source)> {
        m.types[ty]
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn root_fields_belong_to_their_plugins() {
        let m = run(&[
            (
                "shop",
                "extend type Query { product(id: ID!): Product } type Product { id: ID! }",
            ),
            (
                "blog",
                "extend type Query { post: String } extend type Mutation { write: Int }",
            ),
        ])
        .unwrap();
        assert_eq!(
            fields(&m, "Query"),
            vec![
                ("post".into(), Source::Plugin("blog".into())),
                ("product".into(), Source::Plugin("shop".into()))
            ]
        );
        assert_eq!(fields(&m, "Product"), vec![("id".into(), Source::Parent)]);
        assert_eq!(m.types["Product"].owner, "shop");
        assert!(m.types.contains_key("Mutation"));
    }

    #[test]
    fn extensions_are_resolved_by_the_extending_plugin_whatever_the_order() {
        let m = run(&[
            ("reviews", "extend type Product { reviews: [String!]! }"),
            (
                "shop",
                "type Product { id: ID! } extend type Query { p: Product }",
            ),
        ])
        .unwrap();
        assert_eq!(
            fields(&m, "Product"),
            vec![
                ("id".into(), Source::Parent),
                ("reviews".into(), Source::Plugin("reviews".into()))
            ]
        );
    }

    #[test]
    fn identical_definitions_are_shared() {
        let m = run(&[
            (
                "a",
                "\"money\" scalar Money enum Cur { EUR USD } extend type Query { a: Money }",
            ),
            (
                "b",
                "scalar Money enum Cur { EUR USD } extend type Query { b: Cur }",
            ),
        ])
        .unwrap();
        assert_eq!(m.types["Money"].owner, "a");
    }

    #[test]
    fn conflicts_name_both_plugins() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("a", "extend type Query { x: Int }"),
                    ("b", "extend type Query { x: Int }"),
                ],
                "field Query.x is declared by both plugin 'a' and plugin 'b'",
            ),
            (
                &[("a", "type P { id: ID! }"), ("b", "type P { id: String }")],
                "type P is defined differently by plugin 'a' and plugin 'b'",
            ),
            (
                &[("a", "enum E { X }"), ("b", "enum E { X Y }")],
                "enum E is defined differently by plugin 'a' and plugin 'b'",
            ),
            (
                &[
                    ("a", "type P { id: ID! }"),
                    ("b", "extend type P { id: ID! }"),
                ],
                "field P.id is declared by both plugin 'a' and plugin 'b'",
            ),
            (
                &[("a", "enum P { X }"), ("b", "extend type P { id: ID! }")],
                "only object types can be extended",
            ),
            (
                &[("b", "extend type P { id: ID! }")],
                "plugin 'b' extends type P, which no loaded plugin defines",
            ),
        ];
        for (plugins, expected) in cases {
            let e = run(plugins).unwrap_err();
            assert!(
                e.contains(expected),
                "{plugins:?}\n  gave: {e}\n  expected: {expected}"
            );
        }
    }
}
