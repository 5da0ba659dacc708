#!/usr/bin/env bash
# Whole-machine CPU profile of `fds-worker bench`'s throughput run (BENCHMARKS.md, "Why the
# commands/s target is not met"): starts the bench, waits for its throughput phase, records
# every process for SECONDS seconds with `perf`, then prints the split by process and the
# top symbols of the worker and of redis-server.
#
#   scripts/profile-bench.sh [SECONDS] [bench arguments...]
#
# Needs `perf` (apt-get install linux-perf) and a release build; writes target/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-8}"
shift || true
out=target/profile
mkdir -p "$out"
binary=target/release/fds-worker
# `bench` runs in the test kit's binary, fds-testkit, which `cargo build` builds beside it.
{ [ -x "$binary" ] && [ -x target/release/fds-testkit ]; } || cargo build --release

"$binary" bench --latency-run 2s "$@" >"$out/bench.md" 2>&1 &
bench=$!
# The throughput phase starts when the bench says so; give the worker 2 s to reach full speed.
until grep -q "2/4 throughput" "$out/bench.md"; do
  kill -0 "$bench" 2>/dev/null || { cat "$out/bench.md"; exit 1; }
  sleep 0.2
done
sleep 2
perf record -F 499 -a -g -o "$out/perf.data" -- sleep "$seconds" >"$out/perf.log" 2>&1
wait "$bench"

grep -E "throughput: events|CPU used" "$out/bench.md"
echo "== samples by process (swapper = idle)"
perf report -i "$out/perf.data" --no-children --sort comm --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | head -8
for comm in tokio-rt-worker redis-server; do
  echo "== top symbols: $comm"
  perf report -i "$out/perf.data" --no-children --comm "$comm" --sort sym --stdio -g none \
    2>/dev/null | grep -E '^ +[0-9]+\.[0-9]+%' | head -15
done
