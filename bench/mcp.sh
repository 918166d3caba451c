#!/usr/bin/env bash
# MCP tools/call on a release engine: throughput and latency of a tool that
# echoes its argument (fixture-mcp) and of one that reads the key-value
# store (tools-rust memo.recall), on the stateless 2026-07-28 revision and
# on one session of the session-based 2025-11-25 one.
# Needs wrk. Usage: bench/mcp.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
conns=${2:-50}
port=${KILN_BENCH_PORT:-18098}
wasm=target/wasm32-wasip2/release
. bench/lib.sh
for f in fixture_mcp tools_rust; do need_file "$wasm/$f.wasm" "make fixtures"; done

data=$(mktemp -d)
mkdir "$data/plugins"
cp "$wasm/fixture_mcp.wasm" "$data/plugins/fixture-mcp.wasm"
cp "$wasm/tools_rust.wasm" "$data/plugins/tools-rust.wasm"
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
# fixture-mcp's echo tool declares the reader role: the calls carry a key.
KILN_LOG=warn KILN_DATA_DIR="$data" "$bin" keys create --config bench/kiln.toml --name bench --roles reader > "$data/key" 2>/dev/null
export KILN_BENCH_KEY; KILN_BENCH_KEY=$(cat "$data/key")
KILN_LOG=warn KILN_DATA_DIR="$data" "$bin" serve --config bench/kiln.toml --plugins "$data/plugins" --listen "127.0.0.1:$port" &
pid=$!
url="http://127.0.0.1:$port/mcp"
wait_ready "http://127.0.0.1:$port/_kiln/v1/health"
post() { curl -fs "$url" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H "authorization: Bearer $KILN_BENCH_KEY" "$@"; }
machine
export KILN_MCP_SESSION=
echo "--- echo, stateless 2026-07-28: wrk -t1 -c$conns -d${secs}s --latency -s bench/mcp-call.lua $url"
wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/mcp-call.lua "$url"

# A memo to recall, saved through MCP itself.
session=$(post -D - -o /dev/null -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
  | awk 'tolower($1) == "mcp-session-id:" {print $2}' | tr -d '\r')
post -H "mcp-session-id: $session" -o /dev/null -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' || true
post -H "mcp-session-id: $session" -o /dev/null \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"memo.save","arguments":{"title":"bench","text":"remember me"}}}'
echo "--- memo.recall (a key-value read), stateless 2026-07-28"
KILN_MCP_TOOL=memo.recall KILN_MCP_ARGS='{"title":"bench"}' \
  wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/mcp-call.lua "$url"
echo "--- echo on one 2025-11-25 session ($conns connections sharing it)"
KILN_MCP_SESSION=$session wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/mcp-call.lua "$url"
echo "rss: $(rss_of "$pid")"
