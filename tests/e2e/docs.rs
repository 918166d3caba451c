//! The docs keep up with the code they describe: checks that read both.

use kiln_e2e::workspace_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `(namespace, function)` for every function of the host objects the JS
/// SDK declares (`export const kv: { get(...) ... }`).
fn js_host_functions(declarations: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut namespace: Option<String> = None;
    for line in declarations.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("export const ") {
            namespace = rest
                .strip_suffix(": {")
                .map(|n| n.trim().to_string())
                .filter(|n| {
                    ["log", "config", "kv", "cache", "sql", "pubsub", "runtime"]
                        .contains(&n.as_str())
                });
            continue;
        }
        let Some(ns) = &namespace else { continue };
        if t == "};" {
            namespace = None;
            continue;
        }
        // `get(key: string): …`, `getJson<T = any>(key…`, `readonly info: LogFunction;`
        let name: String = t
            .trim_start_matches("readonly ")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let rest = &t.trim_start_matches("readonly ")[name.len()..];
        if !name.is_empty()
            && (rest.starts_with('(') || rest.starts_with('<') || rest.starts_with(": LogFunction"))
        {
            out.push((ns.clone(), name));
        }
    }
    out
}

#[test]
fn the_js_guide_lists_every_host_function_the_sdk_declares() {
    let declared = js_host_functions(&read("sdk-guest/js/index.d.ts"));
    assert!(declared.len() > 20, "parsed too little: {declared:?}");
    assert!(
        declared.contains(&("kv".into(), "list".into())),
        "{declared:?}"
    );
    let guide = read("docs/plugins-js.md");
    let missing: Vec<String> = declared
        .iter()
        .map(|(ns, f)| format!("{ns}.{f}("))
        .filter(|call| !guide.contains(call.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/plugins-js.md does not show {missing:?}"
    );
}

#[test]
fn the_mcp_examples_send_a_credential_and_name_an_inspector_that_runs_on_node_20() {
    for doc in ["docs/mcp.md", "README.md"] {
        let text = read(doc);
        assert!(
            text.contains("@modelcontextprotocol/inspector@0.15.0"),
            "{doc} names the inspector version"
        );
    }
    let mcp = read("docs/mcp.md");
    let by_hand = mcp
        .split("mcp() {")
        .nth(1)
        .and_then(|s| s.split('}').next())
        .expect("docs/mcp.md has the mcp() helper");
    assert!(by_hand.contains("authorization: Bearer $KEY"), "{by_hand}");
}
