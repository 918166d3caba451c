//! The layering of docs/architecture.md, held by a test: every `crate::…`
//! path in the engine's source is an edge from the module it is written in
//! to the module it names, and an edge a "must not depend on" line forbids
//! fails the build.
//!
//! `KNOWN` lists the forbidden edges that exist today, each with the part
//! of the seams issue that removes it. The list only shrinks: an edge
//! listed here that is gone fails the test too, until it is struck off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → modules it must not use.
const RULES: &[(&str, &[&str])] = &[
    // Leaves: depend on nothing of the engine.
    ("path", &["*"]),
    ("text", &["*"]),
    ("hash", &["*"]),
    ("memory", &["*"]),
    (
        "manifest",
        &[
            "runtime", "host", "http", "registry", "watcher", "server", "sections",
        ],
    ),
    (
        "routes",
        &[
            "runtime", "host", "http", "registry", "watcher", "server", "sections",
        ],
    ),
    (
        "store",
        &[
            "runtime", "host", "http", "registry", "watcher", "server", "sections", "graphql",
            "mcp", "identity", "billing",
        ],
    ),
    // The ledger's logic: below the front doors that charge through it.
    (
        "billing",
        &[
            "runtime",
            "host",
            "http",
            "registry",
            "watcher",
            "server",
            "sections",
            "graphql",
            "mcp",
            "front_door",
        ],
    ),
    (
        "streams",
        &[
            "runtime", "host", "http", "registry", "watcher", "server", "sections", "graphql",
            "mcp", "identity", "store",
        ],
    ),
    (
        "runtime",
        &[
            "http", "registry", "watcher", "server", "sections", "identity", "graphql", "mcp",
        ],
    ),
    (
        "host",
        &[
            "http", "registry", "watcher", "server", "sections", "graphql", "mcp",
        ],
    ),
    (
        "identity",
        &["http", "watcher", "server", "sections", "graphql", "mcp"],
    ),
    ("graphql", &["http", "watcher", "server", "sections", "mcp"]),
    ("mcp", &["http", "watcher", "server", "sections", "graphql"]),
    (
        "config",
        &[
            "http",
            "identity",
            "host",
            "streams",
            "runtime",
            "registry",
            "watcher",
            "server",
            "sections",
            "graphql",
            "mcp",
            "store",
            "front_door",
            "billing",
        ],
    ),
    // What every front door's transport shares sits below them all.
    (
        "request",
        &[
            "http",
            "graphql",
            "mcp",
            "registry",
            "watcher",
            "server",
            "sections",
            "front_door",
        ],
    ),
    ("registry", &["http", "watcher", "server", "sections"]),
    ("front_door", &["watcher", "server", "sections"]),
    ("watcher", &["http", "server", "sections"]),
];

/// Forbidden edges that exist today, and what removes them.
const KNOWN: &[(&str, &str, &str)] = &[];

fn module_of(file: &Path, src: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of `text` without its `#[cfg(test)]` modules and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Modules named by `crate::name` or inside `use crate::{a, b::c}`.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = module_of(&path, &src);
                let text = std::fs::read_to_string(&path).expect("read file");
                for target in named(&code(&text)) {
                    if target != module {
                        edges.entry(module.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    edges
}

#[test]
fn modules_use_only_what_the_architecture_allows() {
    let edges = edges();
    assert!(
        edges.get("http").is_some_and(|t| t.contains("runtime")),
        "the edge reader finds nothing: {edges:?}"
    );
    let known: BTreeSet<(&str, &str)> = KNOWN.iter().map(|(a, b, _)| (*a, *b)).collect();
    let mut new = Vec::new();
    let mut seen_known = BTreeSet::new();
    for (module, forbidden) in RULES {
        for target in edges.get(*module).into_iter().flatten() {
            if forbidden.contains(&"*") || forbidden.contains(&target.as_str()) {
                if known.contains(&(*module, target.as_str())) {
                    seen_known.insert((*module, target.as_str()));
                } else {
                    new.push(format!("{module} → {target}"));
                }
            }
        }
    }
    assert!(
        new.is_empty(),
        "edges docs/architecture.md forbids: {new:?} (move the code, or the rule)"
    );
    let gone: Vec<_> = known.difference(&seen_known).collect();
    assert!(
        gone.is_empty(),
        "these known edges are gone: strike them off KNOWN in engine/tests/layering.rs: {gone:?}"
    );
}

#[test]
fn the_reader_sees_grouped_and_inline_paths_but_not_comments_or_tests() {
    let text = "use crate::{a::X, b};\nfn f() { crate::c::g() } // crate::d\n#[cfg(test)]\nmod t { use crate::e; }";
    let found = named(&code(text));
    assert_eq!(
        found,
        ["a", "b", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
}

/// Inside a folder, the one-way edges that keep it free of cycles:
/// (file, a module it must not name).
const ONE_WAY: &[(&str, &str)] = &[
    // The bridge depends on the broker; the broker knows it only as `Forward`.
    ("streams/broker.rs", "redis_bridge"),
];

#[test]
fn folders_have_no_cycles_inside() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (file, forbidden) in ONE_WAY {
        let text = std::fs::read_to_string(src.join(file)).expect("read file");
        assert!(
            !code(&text).contains(forbidden),
            "{file} names {forbidden}, which depends on it"
        );
    }
}
