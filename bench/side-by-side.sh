#!/usr/bin/env bash
# Kiln beside its peers, in one interleaved run: the same GET /hello/{name}
# (a 27-byte JSON body) from
#   axum    plain axum, the practical ceiling (bench/peers/axum-hello)
#   wt      `wasmtime serve` 48.0.8, pooling, a fresh instance per request
#           (bench/peers/wasi-hello, a plain wasi:http component)
#   kiln    Kiln, hello-rust, anonymous on a public route (defaults: fresh
#           instance per request, fuel)
#   kilnkey the same with an API key, through a rate-limit group
#   kilnw   Kiln, hello-rust with warm instances
#   kilnjs  Kiln, hello-js (warm, the default for JavaScript)
# Rounds interleave the systems, so the drift of a shared machine hits all
# of them; the issue's targets are ratios within one run.
# Needs wrk and `cargo install wasmtime-cli --version 48.0.8 --locked`
# (`wt` is skipped without it), and `make examples` + a release engine.
# Usage: bench/side-by-side.sh [rounds] [seconds] [connections]
#        SYSTEMS="kiln kilnw" picks rows; KILN_BIN=path runs another engine
#        build; KILN_BASE=path adds a `<row>@base` row run with that build
#        for every Kiln row, interleaved with the others (before/after).
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-10}; conns=${3:-50}
. bench/lib.sh
kiln=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
need_file plugins/hello-rust.wasm "make examples"
need_file plugins/hello-js.wasm "make examples"
wasmtime=${WASMTIME:-$(command -v wasmtime || echo "$HOME/.cargo/bin/wasmtime")}
systems=${SYSTEMS:-axum wt kiln kilnkey kilnw kilnjs}
base=
if [ -n "${KILN_BASE:-}" ]; then
  base=$(cd "$(dirname "$KILN_BASE")" && pwd)/$(basename "$KILN_BASE")
  for s in $systems; do case $s in kiln*) systems="$systems $s@base";; esac; done
fi
if [ ! -x "$wasmtime" ]; then
  echo "no wasmtime CLI (cargo install wasmtime-cli --version 48.0.8 --locked): skipping wt" >&2
  systems=${systems/wt/}
fi
# The peers build outside the workspace's target directory.
peers=${PEERS_TARGET:-/tmp/kiln-peers-target}
( cd bench/peers/axum-hello && CARGO_TARGET_DIR=$peers cargo build --release -q ) || exit 1
( cd bench/peers/wasi-hello && CARGO_TARGET_DIR=$peers cargo build --release -q --target wasm32-wasip2 ) || exit 1
axum="$peers/release/axum-hello"
guest="$peers/wasm32-wasip2/release/wasi_hello.wasm"

out=${OUT:-/tmp/side-by-side}; mkdir -p "$out"; rm -f "$out"/*.txt "$out"/*.rss
data=$(mktemp -d); mkdir -p "$data/p" "$data/pw" "$data/pj"
cp plugins/hello-rust.wasm "$data/p/"; cp plugins/hello-rust.wasm "$data/pw/"
printf '[limits]\ninstances = "warm"\n' > "$data/pw/hello-rust.toml"
cp plugins/hello-js.wasm "$data/pj/"
cp bench/keyed.toml "$data/kiln.toml"
KILN_LOG=warn KILN_DATA_DIR="$data/dk" "$kiln" keys create --config "$data/kiln.toml" --name bench --roles reader > "$data/key" 2>/dev/null
key=$(cat "$data/key")
pid=
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
start() { # system → sets pid, url, header
  header=
  local kiln=$kiln
  case $1 in *@base) kiln=$base;; esac
  case ${1%@base} in
    axum) "$axum" 127.0.0.1:18181 & pid=$!; url=http://127.0.0.1:18181/hello/bench;;
    wt) "$wasmtime" serve -O pooling-allocator -S cli --addr 127.0.0.1:18182 "$guest" >/dev/null 2>&1 & pid=$!; url=http://127.0.0.1:18182/hello/bench;;
    kiln) KILN_LOG=warn KILN_DATA_DIR="$data/d1" "$kiln" serve --config "$data/kiln.toml" --plugins "$data/p" --listen 127.0.0.1:18183 & pid=$!; url=http://127.0.0.1:18183/hello/bench;;
    kilnkey) KILN_LOG=warn KILN_DATA_DIR="$data/dk" "$kiln" serve --config "$data/kiln.toml" --plugins "$data/p" --listen 127.0.0.1:18186 & pid=$!; url=http://127.0.0.1:18186/hello/bench; header="Authorization: Bearer $key";;
    kilnw) KILN_LOG=warn KILN_DATA_DIR="$data/d2" "$kiln" serve --config "$data/kiln.toml" --plugins "$data/pw" --listen 127.0.0.1:18184 & pid=$!; url=http://127.0.0.1:18184/hello/bench;;
    kilnjs) KILN_LOG=warn KILN_DATA_DIR="$data/d3" "$kiln" serve --config "$data/kiln.toml" --plugins "$data/pj" --listen 127.0.0.1:18185 & pid=$!; url=http://127.0.0.1:18185/hello-js/bench;;
  esac
  for _ in $(seq 1 600); do curl -fs ${header:+-H "$header"} "$url" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "$1 did not come up" >&2; return 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null; pid=; }
for s in $systems; do start "$s" && curl -s ${header:+-H "$header"} "$url" > "$out/$s.body"; stop; done
machine
echo "wrk -t1 -c$conns -d${secs}s --latency, $rounds rounds, medians"
for r in $(seq 1 "$rounds"); do
  for s in $systems; do
    start "$s" || continue
    wrk -t1 -c2 -d2s ${header:+-H "$header"} "$url" >/dev/null 2>&1   # warm-up
    ( sleep $((secs / 2)); awk '/VmRSS/ {print $2}' "/proc/$pid/status" > "$out/$s.$r.rss" ) & rp=$!
    wrk -t1 -c"$conns" -d"${secs}s" --latency ${header:+-H "$header"} "$url" > "$out/$s.$r.txt" 2>&1
    wait $rp
    stop
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { # wrk latency line key (50% or 99%) of system $1 → median in ms
  for r in $(seq 1 "$rounds"); do
    awk -v k="$2" '$1==k {v=$2; u=v; gsub(/[0-9.]/,"",u); sub(/[a-z]+$/,"",v); if (u=="us") v/=1000; else if (u=="s") v*=1000; print v}' "$out/$1.$r.txt"
  done | median
}
printf '%-8s %10s %9s %9s %7s  %s\n' system req/s p50_ms p99_ms rss_MB body
for s in $systems; do
  rps=$(for r in $(seq 1 "$rounds"); do awk '/Requests\/sec/ {print $2}' "$out/$s.$r.txt"; done | median)
  rss=$(cat "$out"/"$s".*.rss 2>/dev/null | sort -n | tail -1)
  errors=$(grep -h "Non-2xx\|Socket errors" "$out"/"$s".*.txt | tr '\n' ' ')
  printf '%-8s %10s %9s %9s %7s  %s %s\n' "$s" "$rps" "$(ms "$s" 50%)" "$(ms "$s" 99%)" "$(( ${rss:-0} / 1024 ))" "$(head -c 40 "$out/$s.body")" "$errors"
done
