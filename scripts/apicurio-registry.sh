#!/usr/bin/env bash
# Builds, once, the runnable Apicurio Registry 2.4.2.Final (a Quarkus application: a runner jar
# and its lib/) that the test kit's local registry runs (crates/fds-testkit/src/localstack/
# apicurio/), into .cache/apicurio/<key>/app; a second run is a no-op. Prints the runner jar's
# path. Everything comes from Maven Central: localstack/apicurio/pom.xml runs Quarkus's build
# step over the published app jar (that file says why this version and what is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=localstack/apicurio
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
scripts/apt-install.sh "${need[@]}"
key=$(find "$dir" -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
out="$PWD/.cache/apicurio/$key"
app="$out/app"
jar="$app/registry-runner.jar"
if [ -f "$app/.complete" ]; then
  echo "$jar"
  exit 0
fi
echo "building Apicurio Registry from Maven Central ($dir/pom.xml) into $app" >&2
build="$out/build"
rm -rf "$app" "$build"
mkdir -p "$build"
cp -r "$dir/." "$build/"
mvn -q -B -f "$build/pom.xml" package -Dmaven.test.skip=true >&2
# The app's legacy-jar layout: the runner, whose manifest names lib/*.
mkdir -p "$app"
cp "$build/target/apicurio-registry-local-1-runner.jar" "$jar"
cp -r "$build/target/lib" "$app/lib"
rm -rf "$build"
[ -f "$jar" ]
touch "$app/.complete"
echo "$jar"
