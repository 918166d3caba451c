#!/usr/bin/env bash
# Storage through a plugin over HTTP, on SQLite (default) and PostgreSQL:
# a one-row SQL query, a kv get and a kv increment, via examples/notes-rust.
# Usage: bench/storage.sh [seconds] [connections]
# PostgreSQL: KILN_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432),
# a database kiln_bench is created fresh there.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-5}
conns=${2:-50}
port=${KILN_BENCH_PORT:-18098}
pg=${KILN_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
. bench/lib.sh
need_file plugins/notes-rust.wasm "make examples"

run() {
  local label=$1 url=$2
  local data; data=$(mktemp -d)
  mkdir -p "$data/plugins"
  cp plugins/notes-rust.wasm "$data/plugins/"
  KILN_LOG=warn KILN_DATA_DIR="$data" KILN_DATABASE_URL="$url" \
    "$bin" serve --config bench/kiln.toml --plugins "$data/plugins" --listen "127.0.0.1:$port" &
  local pid=$!
  wait_ready "http://127.0.0.1:$port/_kiln/v1/health"
  curl -fs -X POST "http://127.0.0.1:$port/notes" -d '{"title":"bench","body":"one row"}' >/dev/null
  curl -fs -X POST "http://127.0.0.1:$port/notes/1/views" >/dev/null
  for t in "sql one-row query|GET /notes/1|" "kv get|GET /notes/1/views|" "kv increment|POST /notes/1/views|-s bench/post.lua"; do
    IFS='|' read -r what route extra <<<"$t"
    echo "--- $label: $what ($route): wrk -t1 -c$conns -d${secs}s --latency $extra"
    # shellcheck disable=SC2086
    wrk -t1 -c"$conns" -d"${secs}s" --latency $extra "http://127.0.0.1:$port${route#* }" \
      | grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors"
  done
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$data"
}

machine
run sqlite "sqlite://$(mktemp -d)/kiln.db"
if command -v psql >/dev/null && psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS kiln_bench" 2>/dev/null \
   && psql "$pg/postgres" -qc "CREATE DATABASE kiln_bench"; then
  run postgres "$pg/kiln_bench"
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS kiln_bench WITH (FORCE)" >/dev/null
else
  echo "PostgreSQL at $pg not reachable: skipped"
fi
