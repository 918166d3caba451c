#!/usr/bin/env bash
# HTTP throughput and latency of GET /hello/{name} on a release engine with
# the example plugins, plus the engine's resident memory: first anonymous on
# a public route, then with an API key through a rate-limit group (the whole
# identity path: key check from the cache, access rule, token bucket).
# Needs wrk (apt-get install wrk). Usage: bench/http.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
conns=${2:-50}
port=${KILN_BENCH_PORT:-18099}
. bench/lib.sh
need_file plugins/hello-rust.wasm "make examples"

data=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
cp bench/keyed.toml "$data/kiln.toml"
KILN_LOG=warn KILN_DATA_DIR="$data" "$bin" keys create --config "$data/kiln.toml" --name bench --roles reader > "$data/key" 2>/dev/null
KILN_LOG=warn KILN_DATA_DIR="$data" "$bin" serve --config "$data/kiln.toml" --plugins plugins --listen "127.0.0.1:$port" &
pid=$!
wait_ready "http://127.0.0.1:$port/hello/warmup"
rss() { rss_of "$pid"; }
machine
echo "rss after start (examples loaded): $(rss)"
echo "--- anonymous, public route: wrk -t1 -c$conns -d${secs}s --latency http://127.0.0.1:$port/hello/world"
wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/hello/world"
echo "rss after load: $(rss)"
kill $pid; wait $pid 2>/dev/null || true

KILN_LOG=warn KILN_DATA_DIR="$data" "$bin" serve --config "$data/kiln.toml" --plugins plugins --listen "127.0.0.1:$port" &
pid=$!
wait_ready "http://127.0.0.1:$port/hello/warmup"
echo "--- API key + rate limit: wrk -t1 -c$conns -d${secs}s --latency -H 'Authorization: Bearer kk_...' http://127.0.0.1:$port/hello/world"
wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $(cat "$data/key")" "http://127.0.0.1:$port/hello/world"
