#!/usr/bin/env bash
# The whole test suite: unit and property tests, and integration tests against real 6-node
# Redis Clusters (redis-server on loopback) and real Apache Kafka 4.1 clusters (KRaft, from the
# Maven Central jars scripts/deps.sh fetches once). --no-fail-fast: one failing test binary does
# not hide the others' results.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# The test stacks' JVMs (Kafka brokers, the Schema Registry) with the C1 compiler only: they
# start sooner and compile less on 2 cores (crates/fds-testkit/src/localstack/mod.rs,
# jvm_options). Set LOCALSTACK_JVM_OPTS (even empty) to choose otherwise.
export LOCALSTACK_JVM_OPTS="${LOCALSTACK_JVM_OPTS--XX:TieredStopAtLevel=1}"
# --workspace: the product (fds-worker: unit tests, tests/, benches) and the test kit (crates/).
cargo test --workspace --all-targets --no-fail-fast "$@"
