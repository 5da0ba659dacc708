#!/usr/bin/env bash
# Installs the Debian packages named as arguments with apt (as root, or through sudo); no
# arguments: nothing to do. Used by deps.sh and kafka-jars.sh for what a machine lacks.
set -euo pipefail
[ $# -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: $*" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
