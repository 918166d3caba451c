//! The full request path in process: the engine's router (request id,
//! canonical path, hardening, authentication, rate limits, dispatch), the
//! plugin call and the response body, without sockets or hyper. Each case
//! is an engine of its own serving `hello-rust`, publicly: its route with a
//! fresh instance per request (the default) and with warm instances, and
//! the same greeting as a one-field GraphQL query and as a stateless MCP
//! `tools/call` (fresh instances), so the front doors compare on one plugin.
//!
//! `cargo bench -p kiln --bench request` runs it under criterion (after
//! `make examples`). `bench/callgrind.sh` runs it as
//! `request -- --requests N` under callgrind twice and takes the
//! difference: instructions per request, the figure docs/performance.md
//! records (stable on a noisy machine where wall time is not).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn hello_wasm() -> PathBuf {
    std::env::var_os("KILN_BENCH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip2/release/hello_rust.wasm")
        })
}

/// An engine serving `hello-rust` from a folder of its own, `settings`
/// being the plugin's own `hello-rust.toml`.
async fn engine(root: &Path, settings: &str) -> kiln::server::Engine {
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let wasm = hello_wasm();
    std::fs::copy(&wasm, plugins.join("hello-rust.wasm")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it first with `make examples`",
            wasm.display()
        )
    });
    std::fs::write(plugins.join("hello-rust.toml"), settings).unwrap();
    let text = format!(
        "plugins_dir = {:?}\ndata_dir = {:?}\n\
         [access]\ndefault = \"public\"\n\
         [runtime]\ncompile_cache = false\n\
         # a small pool: valgrind cannot reserve the default's address space\n\
         max_instances = 4\n\
         [limits]\nmax_concurrency = 2\nwarm_instances = 2\n",
        plugins.display().to_string(),
        root.join("data").display().to_string(),
    );
    let config = kiln::sections::parse(&root.join("kiln.toml"), &text).unwrap();
    kiln::server::start(config).await.unwrap()
}

/// Which front door a case calls.
#[derive(Clone, Copy)]
enum Door {
    Route,
    Graphql,
    Mcp,
}

/// One greeting through `door`, its body read to the end.
async fn request(router: &kiln::http::Front, door: Door) -> usize {
    let builder = Request::builder().header("host", "127.0.0.1");
    let request = match door {
        Door::Route => builder
            .uri("/hello/bench")
            .header("accept", "*/*")
            .body(Body::empty()),
        Door::Graphql => builder
            .method("POST")
            .uri("/graphql")
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .body(Body::from(r#"{"query":"{ hello(name: \"bench\") }"}"#)),
        // The stateless 2026-07-28 revision, with the headers and `_meta`
        // it requires (as bench/mcp-call.lua sends them).
        Door::Mcp => builder
            .method("POST")
            .uri("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "hello")
            .body(Body::from(concat!(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello","#,
                r#""arguments":{"name":"bench"},"_meta":{"#,
                r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
                r#""io.modelcontextprotocol/clientCapabilities":{},"#,
                r#""io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}}}"#
            ))),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Hello, bench!") && !text.contains("\"isError\":true"),
        "{text}"
    );
    body.len()
}

/// name, the plugin's settings, the door.
const CASES: [(&str, &str, Door); 4] = [
    ("fresh", "", Door::Route),
    ("warm", "[limits]\ninstances = \"warm\"\n", Door::Route),
    ("graphql", "", Door::Graphql),
    ("mcp", "", Door::Mcp),
];

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("request");
    for (name, settings, door) in CASES {
        let root = tempfile::tempdir().unwrap();
        let engine = rt.block_on(engine(root.path(), settings));
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(request(&engine.router, door)))
        });
    }
    group.finish();
}

/// `--requests N [--case fresh|warm|graphql|mcp]`: N requests and no statistics, for
/// callgrind.
fn counted(args: &[String]) {
    let n: usize = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .expect("--requests N");
    let case = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
        .map_or("fresh", String::as_str);
    let (_, settings, door) = CASES
        .into_iter()
        .find(|(name, _, _)| *name == case)
        .expect("--case fresh, warm, graphql or mcp");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let engine = engine(root.path(), settings).await;
        for _ in 0..n {
            request(&engine.router, door).await;
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--requests") {
        counted(&args);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
