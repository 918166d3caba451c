#!/usr/bin/env bash
# Priced against unpriced: GET /hello/{name} of hello-rust with an API key,
# once with the route priced at 1 micro (a hold before the call, a post
# after it, both group-committed) and once unpriced, alternating, on SQLite
# and (when reachable) PostgreSQL. The account is credited far beyond what
# the run can spend, so every priced call is a real hold and post.
# Target (issue 20): priced keeps >= 50 % of unpriced throughput, p99 <= 10 ms
# on SQLite. Needs wrk. Usage: bench/billing.sh [seconds] [connections] [rounds]
# PostgreSQL: KILN_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
conns=${2:-50}
rounds=${3:-2}
port=${KILN_BENCH_PORT:-18097}
pg=${KILN_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
. bench/lib.sh
need_file plugins/hello-rust.wasm "make examples"

data=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
mkdir -p "$data/plugins"
cp plugins/hello-rust.wasm "$data/plugins/"

# run DB_NAME DB_URL: the rounds on one database.
run() {
  local name=$1 url=$2
  for priced in unpriced priced; do
    {
      cat bench/keyed.toml
      [ -n "$url" ] && printf '[database]\nurl = "%s"\n' "$url"
      if [ $priced = priced ]; then
        printf '[[billing.prices]]\nplugin = "hello-rust"\nroute = "GET /hello/{name}"\nmicros = 1\n'
      fi
    } > "$data/$priced.toml"
  done
  KILN_LOG=warn KILN_DATA_DIR="$data/$name" "$bin" keys create --config "$data/priced.toml" --name bench --roles reader > "$data/key" 2>/dev/null
  KILN_LOG=warn KILN_DATA_DIR="$data/$name" "$bin" billing credit key:bench 1000000000000 --config "$data/priced.toml" >/dev/null
  for round in $(seq 1 "$rounds"); do
    for priced in unpriced priced; do
      KILN_LOG=warn KILN_DATA_DIR="$data/$name" "$bin" serve --config "$data/$priced.toml" --plugins "$data/plugins" --listen "127.0.0.1:$port" &
      pid=$!
      wait_ready "http://127.0.0.1:$port/_kiln/v1/health"
      # Warm up the connection pool and the key cache.
      curl -fs -H "Authorization: Bearer $(cat "$data/key")" "http://127.0.0.1:$port/hello/warmup" >/dev/null
      echo "--- $name, $priced, round $round: wrk -t1 -c$conns -d${secs}s --latency"
      wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $(cat "$data/key")" \
        "http://127.0.0.1:$port/hello/world" | grep -E "Requests/sec|^ +(50|99)%|Non-2xx"
      kill $pid; wait $pid 2>/dev/null || true
    done
  done
  KILN_LOG=warn KILN_DATA_DIR="$data/$name" "$bin" billing balance key:bench --config "$data/priced.toml" | sed 's/^/    /'
}

machine
run sqlite ""
if command -v psql >/dev/null && psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS kiln_bench_billing" 2>/dev/null \
   && psql "$pg/postgres" -qc "CREATE DATABASE kiln_bench_billing"; then
  run postgres "$pg/kiln_bench_billing"
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS kiln_bench_billing WITH (FORCE)" >/dev/null
else
  echo "PostgreSQL at $pg not reachable: skipped"
fi
