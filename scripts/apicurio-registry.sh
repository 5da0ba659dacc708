#!/usr/bin/env bash
# Builds, once, the runnable Apicurio Registry 3.x (a Quarkus application: a runner jar and its
# lib/) that the test kit's local registry runs (crates/fds-testkit/src/localstack/apicurio/),
# into .cache/apicurio/<key>/app; a second run is a no-op. Prints the runner jar's path.
#
# Apicurio publishes its application to Maven Central only as the plain jar of its `app` module
# (io.apicurio:apicurio-registry-app), never as a runnable distribution, and the releases there
# are incomplete: 3.3.3's `apicurio-registry-app` needs `apicurio-registry-schema-util-provider`
# and nine other io.apicurio 3.3.3 modules that are not served; 3.0.9's needs the parent POM
# `io.apicurio:apicurio-registry:3.0.9` and `-config-definitions`, `-utils-kafka`,
# `-protobuf-schema-utilities` 3.0.9, not served either. So the application is built from
# Apicurio's source at the tag pinned below, trimmed by localstack/apicurio/patch-source.py to
# what builds from Maven Central (its other dependencies come from there):
#   APICURIO_SRC=<a git clone of Apicurio/apicurio-registry holding tag $TAG> \
#     scripts/apicurio-registry.sh
# Without APICURIO_SRC the script first tries the Maven Central route (localstack/apicurio/
# pom.xml: Quarkus's build step over the published jar), which fails today as said above.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=3.0.9
pom=localstack/apicurio/pom.xml
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
scripts/apt-install.sh "${need[@]}"
key=$( (cat "$pom" localstack/apicurio/patch-source.py; echo "$TAG") | sha256sum | cut -c1-16)
out="$PWD/.cache/apicurio/$key"
app="$out/app"
jar="$app/registry-runner.jar"
if [ -f "$app/.complete" ]; then
  echo "$jar"
  exit 0
fi
skip=(-Dmaven.test.skip=true -Dmaven.javadoc.skip=true -Denforcer.skip=true
      -Dspotless.check.skip=true -Dspotless.apply.skip=true -Dlicense.skip=true
      -Dcheckstyle.skip=true -Dmaven.source.skip=true)
rm -rf "$app"
mkdir -p "$out"
if [ -n "${APICURIO_SRC:-}" ]; then
  echo "building Apicurio Registry $TAG from $APICURIO_SRC into $app" >&2
  src="$out/src"
  rm -rf "$src"
  mkdir -p "$src"
  # A copy: the build writes target/ directories and the module list is trimmed below.
  # (The UI, the docs and the examples are not needed; the SDK directories must be there, the
  # root POM lists them. A clone without the UI's large files makes `git archive` complain
  # about them although they are excluded: its complaint is dropped, the POM checked.)
  (cd "$APICURIO_SRC" && git archive "$TAG" -- . ':!ui' ':!docs' ':!examples') 2>/dev/null \
    | tar -x -C "$src" || true
  [ -f "$src/pom.xml" ] || { echo "no pom.xml from $APICURIO_SRC at tag $TAG" >&2; exit 1; }
  sed -i 's#<module>docs</module>##; s#<module>ui</module>##' "$src/pom.xml"
  # Trimmed to what builds from Maven Central alone (see the patch script's comments).
  python3 localstack/apicurio/patch-source.py "$src"
  # `install`: the Quarkus extension (config-index) and its deployment module are resolved
  # from the local repository by Quarkus's build step.
  mvn -q -B -f "$src/pom.xml" -pl 'app,config-index/deployment' -am install "${skip[@]}" >&2
  # Apicurio 3.0 packages a "legacy" Quarkus jar: the runner, whose manifest names lib/*.
  mkdir -p "$app"
  cp "$src/app/target/apicurio-registry-app-$TAG-runner.jar" "$jar"
  cp -r "$src/app/target/lib" "$app/lib"
  rm -rf "$src"
else
  echo "building Apicurio Registry from Maven Central jars ($pom) into $app" >&2
  build="$out/build"
  rm -rf "$build"
  mkdir -p "$build"
  cp "$pom" "$build/pom.xml"
  if ! mvn -q -B -f "$build/pom.xml" package "${skip[@]}" >&2; then
    echo "Apicurio Registry cannot be assembled from Maven Central alone (see the top of $0);" \
      "set APICURIO_SRC to a checkout of Apicurio's source at tag $TAG" \
      "(or LOCALSTACK_APICURIO_JAR to a built registry's runner jar)" >&2
    exit 1
  fi
  # Quarkus's default "fast-jar" layout: quarkus-run.jar beside lib/, app/, quarkus/.
  cp -r "$build/target/quarkus-app" "$app"
  mv "$app/quarkus-run.jar" "$jar"
fi
[ -f "$jar" ]
touch "$app/.complete"
echo "$jar"
