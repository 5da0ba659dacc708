#!/usr/bin/env bash
# The whole test suite: unit and property tests, and integration tests against a real 6-node
# Redis Cluster (started from redis-server on loopback) and librdkafka's mock Kafka cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo test --all-targets "$@"
