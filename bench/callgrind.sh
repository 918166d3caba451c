#!/usr/bin/env bash
# Instructions per request on the full in-process request path (router →
# middleware → dispatch → plugin → response; engine/benches/request.rs),
# counted by callgrind: stable on a noisy machine where wall time is not.
# Each case runs twice, with N1 and N2 requests; the difference over
# N2 - N1 is the cost of one request, start-up and compilation cancelled out.
# Usage: bench/callgrind.sh [N1] [N2]        (after `make examples`)
# Compare two builds: run it on each checkout (same machine, same N).
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-200}; n2=${2:-1200}
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 1; }
[ -f target/wasm32-wasip2/release/hello_rust.wasm ] || { echo "run make examples first" >&2; exit 1; }
# The bench binary (the bench profile is the release one: kiln keeps line tables).
cargo bench -p kiln --bench request --no-run 2>&1 | tail -1
bench=$(ls -t target/release/deps/request-* | grep -v '\.d$' | head -1)
out=${OUT:-/tmp/callgrind}; mkdir -p "$out"
count() { # case n → total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2.out" --error-exitcode=0 \
    "$bench" --requests "$2" --case "$1" >/dev/null 2>"$out/$1.$2.log" \
    || { echo "the $1 case failed:" >&2; tail -20 "$out/$1.$2.log" >&2; exit 1; }
  awk '/^summary:/ {print $2}' "$out/$1.$2.out"
}
printf '%-6s %14s %14s %12s\n' case "I($n1)" "I($n2)" instr/request
for case in ${CASES:-fresh warm graphql mcp}; do
  a=$(count "$case" "$n1"); b=$(count "$case" "$n2")
  printf '%-6s %14s %14s %12s\n' "$case" "$a" "$b" $(( (b - a) / (n2 - n1) ))
done
echo "per-function profiles: callgrind_annotate $out/<case>.$n2.out"
