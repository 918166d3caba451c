# Shared by the bench scripts, sourced from the repository root:
#   . bench/lib.sh
# Gives $bin (the release engine; KILN_BIN=path runs another build, to
# compare two side by side) and the helpers below, and stops the
# script early when a tool or the release build is missing.

bin=${KILN_BIN:-target/release/kiln}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin missing: cargo build --release -p kiln" >&2; exit 1; }

# Stops the script unless FILE exists; HINT says how to make it.
need_file() { [ -f "$1" ] || { echo "$1 missing: $2" >&2; exit 1; }; }

# The machine the numbers come from, for docs/performance.md.
machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
}

# Waits until URL answers 2xx (polling every 10 ms, up to 30 s).
wait_ready() {
  for _ in $(seq 1 3000); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "no answer from $1 within 30 s" >&2
  exit 1
}

# Resident memory of process PID.
rss_of() { awk '/VmRSS/ {print $2 " " $3}' "/proc/$1/status"; }
