#!/usr/bin/env bash
# System packages the tests use for real: Prometheus (and promtool) from Debian.
# Idempotent: does nothing when they are already on PATH.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
[[ ${#missing[@]} -eq 0 ]] && exit 0
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
echo "install-system-deps: installing ${missing[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the package recommends node-exporter and friends we do not run.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package may start a system service where an init system runs; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl stop prometheus || true
fi
