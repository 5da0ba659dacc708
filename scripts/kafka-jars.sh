#!/usr/bin/env bash
# Fetches the jars of a local Apache Kafka broker (KRaft) from Maven Central, once, into
# .cache/kafka/<hash of localstack/kafka/pom.xml>/lib; a second run is a no-op. Installs Java
# and Maven with apt where they are missing. Prints the lib directory on stdout.
#
# The broker is assembled from jars because no Kafka tarball or image can be downloaded on the
# machines this project is built on; localstack/kafka/pom.xml pins the version.
set -euo pipefail
cd "$(dirname "$0")/.."
pom=localstack/kafka/pom.xml
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
scripts/apt-install.sh "${need[@]}"
key=$(sha256sum "$pom" | cut -c1-16)
lib="$PWD/.cache/kafka/$key/lib"
if [ ! -f "$lib/.complete" ]; then
  echo "fetching the Apache Kafka broker jars ($pom) into $lib" >&2
  rm -rf "$lib"
  mvn -q -B -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" >&2
  ls "$lib"/kafka_2.13-*.jar >/dev/null
  touch "$lib/.complete"
fi
echo "$lib"
