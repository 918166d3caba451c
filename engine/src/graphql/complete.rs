//! An answer completed the way the GraphQL spec says, after async-graphql's
//! dynamic executor has run the operation. Two things it does not do:
//!
//! - **Field order.** The spec's result is an ordered map in selection
//!   order; async-graphql resolves the fields of a selection set in a
//!   `FuturesUnordered` and inserts each as it *finishes*
//!   (`resolver_utils::container::do_resolve_container`), so three aliases
//!   of one plugin field come back in whatever order the plugin calls end.
//!   [`follow_selection_order`] puts every object's keys back in the order
//!   of the selection set, fragments expanded in place.
//! - **Null propagation** (spec 6.4.4, "Handling Field Errors"). A failed
//!   non-null field must make its nearest nullable parent null, up to
//!   `data: null`; the dynamic executor records the error and leaves the
//!   field out. [`propagate_nulls`] finds, for each such error, the nearest
//!   nullable position on its path (the types come from the schema, the
//!   field names behind aliases from the document) and nulls it.
//!
//! Both walk the answer once; both are no-ops when nothing needs fixing.

use std::collections::HashMap;

use async_graphql::Value;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::{Name, PathSegment};

/// Fragments nested deeper than this are not followed (validation has
/// refused cycles; this only bounds the walk).
const MAX_NESTING: usize = 128;

/// The operation `name` picks in `doc`.
pub fn operation<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match &doc.operations {
        DocumentOperations::Single(op) => Some(&op.node),
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name).map(|op| &op.node),
            // One named operation runs without operationName too.
            None if ops.len() == 1 => ops.values().next().map(|op| &op.node),
            None => None,
        },
    }
}

fn root_type(registry: &Registry, ty: OperationType) -> Option<&str> {
    match ty {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    }
}

/// One field selection found under a response key, with the type it is
/// selected on (an inline fragment's or fragment's condition, when any).
struct Found<'a> {
    name: &'a str,
    on: &'a str,
    selection_set: &'a SelectionSet,
}

/// Every selection of response key `key` in `sets`, fragments expanded.
fn selections_of<'a>(
    doc: &'a ExecutableDocument,
    sets: &[(&'a SelectionSet, &'a str)],
    key: &str,
) -> Vec<Found<'a>> {
    fn walk<'a>(
        doc: &'a ExecutableDocument,
        set: &'a SelectionSet,
        on: &'a str,
        key: &str,
        depth: usize,
        out: &mut Vec<Found<'a>>,
    ) {
        if depth > MAX_NESTING {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) if f.node.response_key().node.as_str() == key => {
                    out.push(Found {
                        name: f.node.name.node.as_str(),
                        on,
                        selection_set: &f.node.selection_set.node,
                    })
                }
                Selection::Field(_) => {}
                Selection::InlineFragment(inline) => {
                    let on = inline
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(on, |c| c.node.on.node.as_str());
                    walk(
                        doc,
                        &inline.node.selection_set.node,
                        on,
                        key,
                        depth + 1,
                        out,
                    );
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        walk(
                            doc,
                            &fragment.node.selection_set.node,
                            on,
                            key,
                            depth + 1,
                            out,
                        );
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (set, on) in sets {
        walk(doc, set, on, key, 0, &mut out);
    }
    out
}

/// Whether each position of `path` (a field, or an item of a list) may be
/// null, by the schema; `None` when the path does not follow the document.
fn nullability(
    doc: &ExecutableDocument,
    registry: &Registry,
    op: &OperationDefinition,
    path: &[PathSegment],
) -> Option<Vec<bool>> {
    let root = root_type(registry, op.ty)?;
    let mut sets: Vec<(&SelectionSet, &str)> = vec![(&op.selection_set.node, root)];
    // The type of the value at the current position, as written in the
    // schema (`[Todo!]!`), once we are below a field.
    let mut ty: Option<String> = None;
    let mut nullable = Vec::with_capacity(path.len());
    for segment in path {
        match segment {
            PathSegment::Field(key) => {
                let found = selections_of(doc, &sets, key);
                let first = found.first()?;
                let field = registry.types.get(first.on)?.field_by_name(first.name)?;
                nullable.push(!MetaTypeName::create(&field.ty).is_non_null());
                let named = MetaTypeName::concrete_typename(&field.ty);
                let named = registry.types.get(named)?.name();
                sets = found.iter().map(|f| (f.selection_set, named)).collect();
                ty = Some(field.ty.clone());
            }
            PathSegment::Index(_) => {
                let current = ty.take()?;
                let MetaTypeName::List(item) = MetaTypeName::create(&current).unwrap_non_null()
                else {
                    return None;
                };
                nullable.push(!MetaTypeName::create(item).is_non_null());
                ty = Some(item.to_string());
            }
        }
    }
    Some(nullable)
}

/// Nulls, for each failed non-null field in `failed`, its nearest nullable
/// ancestor in `data`, or `data` itself when there is none.
pub fn propagate_nulls(
    data: &mut Value,
    doc: &ExecutableDocument,
    registry: &Registry,
    op: &OperationDefinition,
    failed: &[Vec<PathSegment>],
) {
    for path in failed {
        let Some(nullable) = nullability(doc, registry, op, path) else {
            continue;
        };
        // The failed field itself is non-null: look above it.
        let ancestor = (1..path.len()).rev().find(|&len| nullable[len - 1]);
        match ancestor {
            Some(len) => {
                if let Some(slot) = at_path(data, &path[..len]) {
                    *slot = Value::Null;
                }
            }
            None => *data = Value::Null,
        }
    }
}

/// The value at `path`, unless the path leaves the answer (an ancestor is
/// already null, or was never there).
fn at_path<'a>(data: &'a mut Value, path: &[PathSegment]) -> Option<&'a mut Value> {
    let mut at = data;
    for segment in path {
        at = match (segment, at) {
            (PathSegment::Field(key), Value::Object(map)) => map.get_mut(key.as_str())?,
            (PathSegment::Index(i), Value::List(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Puts the keys of every object in `data` in the order its selection set
/// names them (spec 6.3, CollectFields: first occurrence wins, fragments
/// in place).
pub fn follow_selection_order(
    data: &mut Value,
    doc: &ExecutableDocument,
    op: &OperationDefinition,
) {
    let shape = Shape::of(doc, vec![&op.selection_set.node]);
    shape.apply(data, doc);
}

/// The response keys one selection set (with those it merges with)
/// produces, in order; the shape below each key is worked out once, on
/// first use, and shared by every item of a list.
struct Shape<'a> {
    keys: Vec<(&'a str, Vec<&'a SelectionSet>)>,
    rank: HashMap<&'a str, usize>,
    below: Vec<std::cell::OnceCell<Shape<'a>>>,
}

impl<'a> Shape<'a> {
    fn of(doc: &'a ExecutableDocument, sets: Vec<&'a SelectionSet>) -> Self {
        let mut keys: Vec<(&'a str, Vec<&'a SelectionSet>)> = Vec::new();
        let mut rank: HashMap<&'a str, usize> = HashMap::new();
        for set in sets {
            collect(doc, set, 0, &mut keys, &mut rank);
        }
        for (_, subs) in &mut keys {
            subs.retain(|s| !s.items.is_empty());
        }
        let below = keys.iter().map(|_| std::cell::OnceCell::new()).collect();
        Shape { keys, rank, below }
    }

    fn apply(&self, value: &mut Value, doc: &'a ExecutableDocument) {
        match value {
            Value::List(items) => {
                for item in items {
                    self.apply(item, doc);
                }
            }
            Value::Object(map) => {
                let rank = |k: &Name| self.rank.get(k.as_str()).copied().unwrap_or(usize::MAX);
                if !map.keys().map(rank).is_sorted() {
                    map.sort_by_cached_key(|k, _| rank(k));
                }
                for (i, (key, subs)) in self.keys.iter().enumerate() {
                    if subs.is_empty() {
                        continue;
                    }
                    if let Some(child) = map.get_mut(*key) {
                        self.below[i]
                            .get_or_init(|| Shape::of(doc, subs.clone()))
                            .apply(child, doc);
                    }
                }
            }
            _ => {}
        }
    }
}

fn collect<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    depth: usize,
    keys: &mut Vec<(&'a str, Vec<&'a SelectionSet>)>,
    rank: &mut HashMap<&'a str, usize>,
) {
    if depth > MAX_NESTING {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                let key = f.node.response_key().node.as_str();
                let sub = &f.node.selection_set.node;
                match rank.get(key) {
                    Some(&i) => keys[i].1.push(sub),
                    None => {
                        rank.insert(key, keys.len());
                        keys.push((key, vec![sub]));
                    }
                }
            }
            Selection::InlineFragment(inline) => {
                collect(doc, &inline.node.selection_set.node, depth + 1, keys, rank)
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node) {
                    collect(
                        doc,
                        &fragment.node.selection_set.node,
                        depth + 1,
                        keys,
                        rank,
                    );
                }
            }
        }
    }
}
