#!/usr/bin/env bash
# Build the Kubeflow Trainer v2 backend's two controller-managers from their Go modules and cache
# them like the other cluster binaries:
#   ~/.cache/miniseries/bin/jobset-<version>/jobset            sigs.k8s.io/jobset (JobSet controller + webhooks)
#   ~/.cache/miniseries/bin/trainer-<version>/trainer          github.com/kubeflow/trainer/v2 trainer-controller-manager
# Only the manager binaries are built (no in-place-restart agent, initializers or data cache).
# The tests (tests/harness/trainer.py, marker `trainjob`) run both against the test API server;
# their CRDs and webhook configurations are vendored under tests/harness/crds/ (see its README).
#
# The module cache is read-only, so each build happens in a writable copy of its module; neither
# module has replace lines and each go.sum pins everything. Versions are scripts/versions.env's.
#   scripts/build-trainer.sh           build whatever is missing
#   scripts/build-trainer.sh --print   KEY=path lines
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
source "$here/phase.sh"
cache="${MINISERIES_BIN_CACHE:-$HOME/.cache/miniseries/bin}"
jobset_bin="$cache/jobset-$JOBSET_VERSION/jobset"
trainer_bin="$cache/trainer-$TRAINER_VERSION/trainer"

if [[ "${1:-}" == "--print" ]]; then
  echo "jobset=$jobset_bin"
  echo "trainer=$trainer_bin"
  exit 0
fi

build() {  # name version module package-in-module output
  local name="$1" version="$2" module="$3" pkg="$4" bin="$5"
  if [[ -x "$bin" ]]; then
    # The binary is cached, but tests/unit/test_trainjob_vendored.py compares the vendored CRDs and
    # webhooks with the module's own files: the module must be in the module cache all the same
    # (a no-op when it is; a Go toolchain is there whenever the binary was built here).
    if command -v go >/dev/null; then
      (cd "$(mktemp -d)" && go mod download "$module@$version" && rmdir "$PWD")
    fi
    echo "$name $version: cached at $bin"
    phase "go:$name" 0 cached
    return 0
  fi
  command -v go >/dev/null || { echo "go toolchain not found on PATH (needed to build $name)" >&2; exit 1; }
  # Two heavy Go builds at once starve a 2-core machine: wait for anyone else's to finish
  # (MINISERIES_BUILD_NO_WAIT=1: build now, under nice, beside them).
  while [[ -z "${MINISERIES_BUILD_NO_WAIT:-}" ]] && pgrep -f "go build" >/dev/null; do echo "waiting for another go build to finish..."; sleep 15; done
  local src work start=$(date +%s)
  src="$(cd "$(mktemp -d)" && go mod download -json "$module@$version" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' && rmdir "$PWD")"
  work="$(mktemp -d)"
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  mkdir -p "$(dirname "$bin")"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$pkg")
  install -m 644 "$src/LICENSE" "$(dirname "$bin")/LICENSE"
  mv "$bin.tmp" "$bin"  # last: a waiting test (tests/harness/builds.py) takes the binary for the whole
  chmod -R u+w "$work"; rm -rf "$work"
  echo "$name $version built in $(( $(date +%s) - start ))s: $bin"
  phase "go:$name" $(( $(date +%s) - start )) built
}

build jobset "$JOBSET_VERSION" sigs.k8s.io/jobset . "$jobset_bin"
build trainer "$TRAINER_VERSION" github.com/kubeflow/trainer/v2 ./cmd/trainer-controller-manager "$trainer_bin"
