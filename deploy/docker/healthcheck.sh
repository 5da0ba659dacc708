#!/bin/bash
# Container HEALTHCHECK: GET /healthz on the worker's metrics listener, with bash's /dev/tcp
# (the slim image has no curl or wget). Healthy = HTTP 200.
# The address comes from FDS_METRICS__LISTEN (host:port, [v6]:port); a wildcard host is probed
# on loopback. FDS_HEALTHCHECK_PATH=/readyz probes readiness instead.
set -euo pipefail
listen="${FDS_METRICS__LISTEN:-0.0.0.0:9464}"
port="${listen##*:}"
host="${listen%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
  "" | 0.0.0.0 | "::") host=127.0.0.1 ;;
esac
path="${FDS_HEALTHCHECK_PATH:-/healthz}"
exec 3<>"/dev/tcp/${host}/${port}"
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
read -r -t 2 _ status _ <&3
[ "$status" = "200" ]
