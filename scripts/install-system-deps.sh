#!/usr/bin/env bash
# System packages the tests use for real, all from Debian bookworm:
# - Prometheus (and promtool);
# - the container node (tests/harness/node.py): containerd 1.6.20 and runc 1.1.5 (Debian bookworm's;
#   kubelet 1.37 still runs with containerd 1.6, and Kubernetes is ending containerd 1.x support,
#   so this pin is the one to revisit first), containernetworking-plugins 1.1.1 (bridge,
#   host-local, loopback), iptables (the bridge plugin's masquerade and the node's service rule);
# - the image builds without a Docker daemon (scripts/build-images.sh): buildah 1.28 and
#   mmdebstrap 1.3 (the local Debian base image the tests build on).
# Idempotent: does nothing when everything is already installed.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
[[ ${#missing[@]} -eq 0 ]] && exit 0
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
echo "install-system-deps: installing ${missing[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: Prometheus recommends node-exporter and friends we do not run; buildah
# recommends a second runtime (crun) and slirp4netns that a root build with chroot isolation needs not.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# A package may start a system service where an init system runs; the tests start their own.
for svc in prometheus containerd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
  fi
done
