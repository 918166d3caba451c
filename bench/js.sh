#!/usr/bin/env bash
# JavaScript plugins on a release engine (examples/hello-js): cold compile,
# cached load, restart to first response, and throughput of a JS hello route
# with warm instances (the default) and with a fresh instance per call.
# Needs wrk (apt-get install wrk). Usage: bench/js.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
conns=${2:-50}
port=${KILN_BENCH_PORT:-18098}
. bench/lib.sh

data=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
mkdir -p "$data/plugins"
machine
start=$(date +%s%N)
"$bin" build examples/hello-js --plugins "$data/plugins" >/dev/null
echo "kiln build examples/hello-js: $(( ($(date +%s%N) - start) / 1000000 )) ms, $(stat -c %s "$data/plugins/hello-js.wasm") bytes"

# Starts the engine and prints the time from exec to the first 200 from the JS route.
serve() {
  local t0=$(date +%s%N)
  KILN_LOG=info KILN_DATA_DIR="$data" "$bin" serve --config "$data/kiln.toml" --plugins "$data/plugins" \
    --listen "127.0.0.1:$port" 2>"$data/log" &
  pid=$!
  wait_ready "http://127.0.0.1:$port/hello-js/warmup"
  echo "$1: first response after $(( ($(date +%s%N) - t0) / 1000000 )) ms ($(grep -o 'cache=[A-Za-z]*' "$data/log" | head -1))"
}
stop() { kill $pid; wait $pid 2>/dev/null || true; }

printf '[access]\ndefault = "public"\n' > "$data/kiln.toml"
serve "cold start (compiles)"
stop
serve "restart (compiled component cached)"
echo "--- warm instances: wrk -t1 -c$conns -d${secs}s --latency http://127.0.0.1:$port/hello-js/world"
wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/hello-js/world"
echo "rss: $(rss_of "$pid")"
stop

printf '[limits]\ninstances = "fresh"\n' > "$data/plugins/hello-js.toml"
serve "fresh-instance mode"
echo "--- fresh instance per call: wrk -t1 -c$conns -d${secs}s --latency http://127.0.0.1:$port/hello-js/world"
wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/hello-js/world"
stop
