#!/usr/bin/env bash
# Memory an engine gives back after a burst of MCP sessions expires and
# after 200 GraphQL WebSockets with 100 subscriptions each close, with
# glibc's malloc (the default) and, when installed, jemalloc preloaded
# (apt-get install libjemalloc2). Prints RSS before, during, after.
#   bench/memory.sh [SESSIONS]     (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
n=${1:-10000}
port=18093
token=bench-admin-token-0123456789
machine
need_file plugins/hello-rust.wasm "make run (or make examples) first"
pubsub=target/wasm32-wasip2/release/fixture_pubsub.wasm
need_file "$pubsub" "make fixtures"
run() {
  local label=$1; shift
  local dir; dir=$(mktemp -d)
  mkdir -p "$dir/plugins"
  cp plugins/hello-rust.wasm "$dir/plugins/"
  cp "$pubsub" "$dir/plugins/pub.wasm"
  cat > "$dir/kiln.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$dir/data"
[admin]
token = "$token"
[access]
default = "public"
[mcp]
max_sessions = $((n + 10))
max_sessions_per_client = $((n + 10))
sessions_per_minute = 1000000
session_idle_timeout_ms = 5000
[streams]
max_open_per_client = 1000
max_subscriptions_per_client = 100000
[graphql]
max_operations_per_connection = 100
TOML
  env "$@" KILN_LOG=warn "$bin" serve --config "$dir/kiln.toml" --plugins "$dir/plugins" &
  local pid=$!
  wait_ready "http://127.0.0.1:$port/_kiln/v1/health"
  echo "== $label"
  python3 bench/sessions.py "127.0.0.1:$port" "$pid" "$n" "$token"
  node bench/streams.mjs "127.0.0.1:$port" "$pid" 200 100
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
run "glibc malloc"
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -f "$jemalloc" ]; then
  run "jemalloc (LD_PRELOAD)" LD_PRELOAD="$jemalloc"
fi
