#!/usr/bin/env bash
# The main job on a local stack: a 6-node Redis Cluster + Kafka (librdkafka's mock cluster by
# default, 3 Apache Kafka brokers with --kafka apache), synthetic traffic, the worker with a
# live summary, and a ground-truth check at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# cargo's own progress: the first build on a fresh 2-core machine takes about ten minutes.
# Builds both default members: fds-worker hands `demo` over to the test kit's binary beside it.
cargo build --release
exec target/release/fds-worker demo "$@"
