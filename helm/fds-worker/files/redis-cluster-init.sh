#!/bin/sh
# Creates the Redis Cluster once (seed §8): `redis-cli --cluster create ... --cluster-replicas 1`
# over the given nodes, then waits until every node reports cluster_state:ok. Idempotent: when the
# first node already knows other nodes, the cluster exists and only the wait is done.
# Used by docker-compose.yml (service redis-init) and the chart's cluster-create Job.
#
# Environment:
#   REDIS_NODES            space-separated host:port of every node (6: 3 masters + 3 replicas)
#   REDIS_PASSWORD[_FILE]  the `default` user's password (REDIS_PASSWORD_FILE: a mounted Secret)
#   REDIS_CLUSTER_REPLICAS replicas per master (default 1)
#   REDIS_INIT_TIMEOUT     seconds to wait for the nodes, and again for cluster_state:ok (default 300)
set -eu

: "${REDIS_NODES:?REDIS_NODES: space-separated host:port of the cluster nodes}"
replicas="${REDIS_CLUSTER_REPLICAS:-1}"
timeout="${REDIS_INIT_TIMEOUT:-300}"
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")"
  export REDISCLI_AUTH
elif [ -n "${REDIS_PASSWORD:-}" ]; then
  REDISCLI_AUTH="$REDIS_PASSWORD"
  export REDISCLI_AUTH
fi

cli() { # host:port, then a command
  node="$1"
  shift
  redis-cli -h "${node%:*}" -p "${node##*:}" "$@"
}
info_field() { # host:port field -> the value of `field` in CLUSTER INFO (empty if unreachable)
  cli "$1" CLUSTER INFO 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}
wait_for() { # description, then a command that succeeds when done
  what="$1"
  shift
  waited=0
  until "$@"; do
    if [ "$waited" -ge "$timeout" ]; then
      echo "redis-cluster-init: timed out after ${timeout}s waiting for $what" >&2
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}
all_answer() {
  for node in $REDIS_NODES; do
    [ "$(cli "$node" PING 2>/dev/null)" = "PONG" ] || return 1
  done
}
all_ok() {
  for node in $REDIS_NODES; do
    [ "$(info_field "$node" cluster_state)" = "ok" ] || return 1
  done
}

wait_for "every node to answer PING ($REDIS_NODES)" all_answer
first="${REDIS_NODES%% *}"
known="$(info_field "$first" cluster_known_nodes)"
if [ "${known:-1}" -gt 1 ]; then
  echo "redis-cluster-init: $first already knows $known nodes; not creating"
else
  echo "redis-cluster-init: creating the cluster over $REDIS_NODES (replicas per master: $replicas)"
  # shellcheck disable=SC2086 # one argument per node
  redis-cli --cluster create $REDIS_NODES --cluster-replicas "$replicas" --cluster-yes
fi
wait_for "cluster_state:ok on every node" all_ok
echo "redis-cluster-init: cluster_state:ok on every node"
cli "$first" CLUSTER INFO | tr -d '\r' | grep -E '^cluster_(state|slots_assigned|slots_ok|slots_fail|known_nodes|size):'
