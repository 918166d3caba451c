//! Per-call cost of the isolation model: a fresh instance from `InstancePre`,
//! one `handle` call into the hello example, and the drop that returns the
//! pool slot. Run with `cargo bench -p kiln --bench instantiate` after
//! `make examples` (needs `target/wasm32-wasip2/release/hello_rust.wasm`).

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::config::{Config, PluginSettings};
use kiln::http::dispatch::call_handler;
use kiln::runtime::bindings::types;
use kiln::runtime::{PluginSource, Runtime};

fn hello_wasm() -> Vec<u8> {
    let path = std::env::var_os("KILN_BENCH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip2/release/hello_rust.wasm")
        });
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it first with `make examples`",
            path.display()
        )
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("hello");
    for cpu_limit in ["fuel", "epoch"] {
        let mut config = Config {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        };
        config.runtime.compile_cache = false;
        config.runtime.cpu_limit = if cpu_limit == "fuel" {
            kiln::config::CpuLimit::Fuel
        } else {
            kiln::config::CpuLimit::Epoch
        };
        let runtime =
            Arc::new(Runtime::new(&config, Default::default(), Default::default()).unwrap());
        let plugin = rt
            .block_on(runtime.load(PluginSource {
                path: "hello.wasm".into(),
                stem: "hello".into(),
                wasm: hello_wasm(),
                settings: PluginSettings::default(),
                limits: config.default_limits(),
                outbound: Default::default(),
            }))
            .unwrap();
        let request = types::HttpRequest {
            method: types::Method::Get,
            path: "/hello/bench".into(),
            query: String::new(),
            params: vec![("name".into(), "bench".into())],
            headers: vec![("accept".into(), "*/*".into())],
            body: Vec::new(),
        };
        let id: Arc<str> = Arc::from("bench");
        group.bench_function(format!("instantiate_call_drop/{cpu_limit}"), |b| {
            b.iter(|| {
                rt.block_on(call_handler(
                    &plugin,
                    "GET /hello/{name}",
                    &request,
                    kiln::runtime::CallSpec::new(id.clone(), "GET /hello/{name}"),
                ))
                .unwrap()
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
