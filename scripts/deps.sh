#!/usr/bin/env bash
# Installs what building and testing fds-worker needs on Debian, if it is missing:
# redis-server/redis-cli (the real 6-node test cluster), cmake + a C toolchain (librdkafka is
# built statically), OpenSSL and SASL headers (Kafka TLS/SASL); then Java, Maven and the Apache
# Kafka broker jars the tests run the local Kafka cluster from (scripts/kafka-jars.sh); nftables
# for the soak's network partition.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s libsasl2-dev >/dev/null 2>&1 || need+=(libsasl2-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
# librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> even when built without curl
# (`#ifdef WITH_OAUTHBEARER_OIDC` of a macro its CMake build always defines, as 0).
[ -f /usr/include/curl/curl.h ] || [ -f "/usr/include/$(uname -m)-linux-gnu/curl/curl.h" ] \
  || need+=(libcurl4-openssl-dev)
# c++: libFuzzer (scripts/fuzz.sh). (The TLS tests' certificates are made in-process by rcgen.)
command -v c++ >/dev/null 2>&1 || need+=(g++)
# nft: the soak's partition between the workers and one Redis node (localstack/network_cut.rs).
command -v nft >/dev/null 2>&1 || need+=(nftables)
# The soak's timeline chart draws its text with DejaVu Sans (crates/fds-testkit/src/soak/report.rs).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# pip: fastavro, the second Avro implementation the codec test checks schema evolution with.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
"$(dirname "$0")/apt-install.sh" "${need[@]}"
python3 -c 'import fastavro' 2>/dev/null \
  || python3 -m pip install --quiet fastavro 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages fastavro
"$(dirname "$0")/kafka-jars.sh" >/dev/null
# The local Schema Registry (Apicurio, built once from Maven Central jars).
"$(dirname "$0")/apicurio-registry.sh" >/dev/null
