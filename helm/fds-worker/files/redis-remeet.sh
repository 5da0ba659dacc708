#!/bin/sh
# Kubernetes postStart hook of a Redis Cluster pod: re-introduces this node to its peers by their
# current IPs. Pods get new IPs when they are rescheduled; a node that restarts alone is found
# again by gossip, but when several restart together their nodes.conf files hold only stale IPs.
# CLUSTER MEET with a known node's new address makes Redis update that node's address. Only after
# the cluster was created (nodes.conf lists other nodes); never fails the pod.
#
# Environment: REDIS_PEERS (space-separated DNS names of every node), POD_IP (this pod's IP,
# skipped), REDIS_PASSWORD[_FILE].
set -u
[ -n "${REDIS_PEERS:-}" ] || exit 0
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")"
  export REDISCLI_AUTH
elif [ -n "${REDIS_PASSWORD:-}" ]; then
  REDISCLI_AUTH="$REDIS_PASSWORD"
  export REDISCLI_AUTH
fi
(
  # The hook must not block the container: wait for the server in the background, bounded.
  i=0
  until [ "$(redis-cli PING 2>/dev/null)" = "PONG" ]; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || exit 0
    sleep 1
  done
  known="$(redis-cli CLUSTER INFO 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')"
  [ "${known:-1}" -gt 1 ] || exit 0
  for peer in $REDIS_PEERS; do
    ip="$(getent hosts "$peer" 2>/dev/null | awk '{ print $1; exit }')"
    [ -n "$ip" ] && [ "$ip" != "${POD_IP:-}" ] || continue
    redis-cli CLUSTER MEET "$ip" 6379 >/dev/null 2>&1
  done
) >/dev/null 2>&1 &
exit 0
