#!/usr/bin/env bash
# The main job on a local stack: a 6-node Redis Cluster + Kafka mock cluster, synthetic
# traffic, the worker with a live summary, and a ground-truth check at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --quiet
exec target/release/fds-worker demo "$@"
