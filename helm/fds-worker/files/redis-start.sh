#!/bin/sh
# Starts one Redis Cluster node: redis.conf, then the credentials, then extra arguments.
#
# Environment (each *_FILE variant reads the value from a file, e.g. a mounted Secret):
#   REDIS_CONF                 the config file (default /etc/redis/redis.conf)
#   REDIS_PASSWORD[_FILE]      password of the `default` (admin) user: requirepass + masterauth
#   REDIS_WORKER_USER          ACL user for fds-worker (e.g. fds-worker); unset = no such user
#   REDIS_WORKER_PASSWORD[_FILE]  its password (stored as a SHA-256 hash in the ACL)
#   REDIS_WORKER_ACL           its rule: keys and commands (the chart's redisCluster.workerAcl)
#   REDIS_ANNOUNCE_HOSTNAME    cluster-announce-hostname (a pod's stable DNS name)
#   REDIS_RUN_DIR              where the credentials file is written (default /tmp; memory-backed
#                              in the chart)
# Passwords: letters, digits and -_.+/= only (they go into a config file unquoted).
set -eu

secret() { # NAME -> the value of $NAME, or the contents of the file named by ${NAME}_FILE
  eval "file=\${${1}_FILE:-}"
  if [ -n "$file" ]; then
    cat "$file"
  else
    eval "printf '%s' \"\${${1}:-}\""
  fi
}
check_password() {
  case "$2" in
    *[!A-Za-z0-9._+/=-]*) echo "redis-start: $1 has characters other than A-Za-z0-9._+/=-" >&2; exit 2 ;;
  esac
}

run_dir="${REDIS_RUN_DIR:-/tmp}"
auth="$run_dir/redis-auth.conf"
umask 077
mkdir -p "$run_dir"
: > "$auth"

password="$(secret REDIS_PASSWORD)"
if [ -n "$password" ]; then
  check_password REDIS_PASSWORD "$password"
  printf 'requirepass %s\nmasterauth %s\n' "$password" "$password" >> "$auth"
fi

if [ -n "${REDIS_WORKER_USER:-}" ]; then
  worker_password="$(secret REDIS_WORKER_PASSWORD)"
  if [ -z "$worker_password" ] || [ -z "${REDIS_WORKER_ACL:-}" ]; then
    echo "redis-start: REDIS_WORKER_USER needs REDIS_WORKER_PASSWORD[_FILE] and REDIS_WORKER_ACL" >&2
    exit 2
  fi
  check_password REDIS_WORKER_PASSWORD "$worker_password"
  hash="$(printf '%s' "$worker_password" | sha256sum | cut -d ' ' -f 1)"
  printf 'user %s reset on #%s %s\n' "$REDIS_WORKER_USER" "$hash" "$REDIS_WORKER_ACL" >> "$auth"
fi

if [ -n "${REDIS_ANNOUNCE_HOSTNAME:-}" ]; then
  printf 'cluster-announce-hostname %s\n' "$REDIS_ANNOUNCE_HOSTNAME" >> "$auth"
fi

exec redis-server "${REDIS_CONF:-/etc/redis/redis.conf}" --include "$auth" "$@"
