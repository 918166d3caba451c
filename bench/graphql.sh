#!/usr/bin/env bash
# GraphQL on a release engine with the example plugins (catalog-rust):
# throughput of one-field queries that call a plugin (hello-rust: no
# storage; catalog-rust: a key-value read), the same for a
# query the host answers alone ({ __typename }), and fan-out latency from
# one publish to many WebSocket subscribers (bench/fanout.rs).
# Needs wrk. Usage: bench/graphql.sh [seconds] [connections] [subscribers] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
conns=${2:-50}
subs=${3:-1000}
rounds=${4:-20}
port=${KILN_BENCH_PORT:-18099}
. bench/lib.sh
need_file plugins/catalog-rust.wasm "make examples"

data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
KILN_LOG=warn KILN_DATA_DIR="$data" "$bin" serve --config bench/kiln.toml --plugins plugins --listen "127.0.0.1:$port" &
pid=$!
url="http://127.0.0.1:$port"
wait_ready "$url/_kiln/v1/health"
curl -fs "$url/graphql" -H 'content-type: application/json' \
  -d '{"query":"mutation { addProduct(input: {sku: \"bench\", name: \"Bench\"}) { sku } }"}' >/dev/null
rss() { rss_of "$pid"; }
machine
echo "--- one-field query calling hello-rust (no storage): wrk"
KILN_QUERY='{"query":"{ hello(name: \"bench\") }"}' wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/graphql-query.lua "$url/graphql"
echo "--- one-field query calling catalog-rust, which reads the key-value store: wrk -t1 -c$conns -d${secs}s --latency -s bench/graphql-query.lua $url/graphql"
wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/graphql-query.lua "$url/graphql"
echo "--- { __typename }, answered by the host alone"
KILN_QUERY='{"query":"{ __typename }"}' wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/graphql-query.lua "$url/graphql"
echo "rss after query load: $(rss)"
echo "--- fan-out: cargo bench -p kiln-e2e --bench fanout -- $url $subs $rounds"
peak=$(mktemp)
( while kill -0 "$pid" 2>/dev/null; do rss | awk '{print $1}' >> "$peak"; sleep 0.2; done ) &
sampler=$!
cargo bench -q -p kiln-e2e --bench fanout -- "$url" "$subs" "$rounds"
kill "$sampler" 2>/dev/null || true
echo "peak rss during the fan-out: $(sort -n "$peak" | tail -1) kB"
rm -f "$peak"
echo "rss after the fan-out (subscribers closed): $(rss)"
