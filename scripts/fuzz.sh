#!/usr/bin/env bash
# Bounded fuzzing of the hostile-input surfaces with cargo-fuzz (libFuzzer):
#   decode    raw Kafka values -> Confluent framing, Avro decoding/resolution, validation
#   validate  arbitrary field values -> validation, injection-safe keys, per-slot units
# Each target runs SECONDS (default 60, or $FUZZ_SECONDS) from the committed corpus in
# fuzz/corpus/<target>/ (read only; new inputs go to a scratch directory). Any crash, panic,
# timeout (>10 s per input) or memory blow-up (RSS > 1 GiB, one allocation > 256 MiB) fails the
# run; the reproducer is left in fuzz/artifacts/<target>/:
#   cargo fuzz run --sanitizer none <target> fuzz/artifacts/<target>/<file>
# To grow the committed corpus: cargo fuzz run --sanitizer none <target> (writes into
# corpus/<target>), then cargo fuzz cmin --sanitizer none <target>.
#
# `--sanitizer none`: the crate forbids unsafe code, so AddressSanitizer adds nothing but a
# slower build and run; panics, overflow checks (debug assertions are on) and libFuzzer's
# memory limits still apply. Works on the stable toolchain (no -Z flags are needed then).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-60}}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi
cd fuzz
cargo fuzz build --sanitizer none
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target" "corpus/$target"
  max_len=4096
  [ "$target" = decode ] && max_len=70000 # above limits.max_message_bytes (64 KiB)
  echo "fuzzing $target for ${seconds}s" >&2
  log="$scratch/$target.log"
  set +e
  cargo fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
    -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target FAILED (exit $status); reproducer in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
  grep -E '^(INFO: seed corpus|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" >&2
done
echo "fuzzing: 0 crashes, 0 panics in $(cargo fuzz list | wc -l) targets x ${seconds}s"
