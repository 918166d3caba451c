#!/usr/bin/env bash
# What a cold compile of a big (JavaScript) component does to requests for
# another plugin: wrk on the hello route for 10 s, once with nothing else
# going on and once while the JS component compiles (installed 1 s in).
#   bench/compile.sh            (after make run / make fixtures, release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
port=18094
# The JS test fixture (the numbers in docs/performance.md), else the JS example.
js=target/e2e-js/fixture-js.wasm
[ -f "$js" ] || js=plugins/hello-js.wasm
need_file plugins/hello-rust.wasm "make run (or make examples) first"
need_file "$js" "make examples builds plugins/hello-js.wasm"
name=$(basename "$js" .wasm)
machine
dir=$(mktemp -d)
mkdir -p "$dir/plugins"
cp plugins/hello-rust.wasm "$dir/plugins/"
cat > "$dir/kiln.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$dir/data"
[access]
default = "public"
TOML
KILN_LOG=info "$bin" serve --config "$dir/kiln.toml" --plugins "$dir/plugins" 2> "$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
wait_ready "http://127.0.0.1:$port/_kiln/v1/health"
url="http://127.0.0.1:$port/hello/ada"
wrk -t1 -c16 -d3s "$url" >/dev/null   # warm up
echo "== hello, nothing else running"
wrk -t1 -c16 -d10s --latency "$url" | grep -E 'Requests/sec|50%|99%'
echo "== hello while $(basename "$js") ($(du -h "$js" | cut -f1)) compiles"
( sleep 1; cp "$js" "$dir/plugins/.js.tmp"; mv "$dir/plugins/.js.tmp" "$dir/plugins/$name.wasm" ) &
wrk -t1 -c16 -d10s --latency "$url" | grep -E 'Requests/sec|50%|99%'
for _ in $(seq 1 600); do grep -q "compiled $name" "$dir/log" && break; sleep 0.1; done
grep -E 'compiling|compiled' "$dir/log" | sed 's/^.*INFO //'
