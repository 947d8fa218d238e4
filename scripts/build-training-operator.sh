#!/usr/bin/env bash
# Build the Kubeflow training-operator (controller + webhooks for PyTorchJob) from its Go
# module and cache the binary, like the other cluster binaries, under
#   ~/.cache/miniseries/bin/training-operator-<version>/training-operator
# The e2e test (tests/e2e) runs it against the test API server.
#
# The module cache is read-only, so the build happens in a temporary writable copy of the
# module. v1.9.x has no replace lines in go.mod; its go.sum pins everything.
# (v1.9.1 cannot be verified: sum.golang.org answers 404 for it.) The version is scripts/versions.env's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
source "$here/phase.sh"
cache="${MINISERIES_BIN_CACHE:-$HOME/.cache/miniseries/bin}"
out="$cache/training-operator-$TRAINING_OPERATOR_VERSION"
bin="$out/training-operator"

if [[ -x "$bin" ]]; then
  echo "training-operator $TRAINING_OPERATOR_VERSION: cached at $bin"
  phase go:training-operator 0 cached
  exit 0
fi
command -v go >/dev/null || { echo "go toolchain not found on PATH (needed to build the training-operator)" >&2; exit 1; }

start=$(date +%s)
# Two heavy Go builds at once starve a 2-core machine: wait for anyone else's to finish.
while pgrep -f "go build" >/dev/null; do echo "waiting for another go build to finish..."; sleep 15; done

mod="github.com/kubeflow/training-operator@$TRAINING_OPERATOR_VERSION"
src="$(go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"

mkdir -p "$out"
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" ./cmd/training-operator.v1)
# The CRD travels with the binary so the test applies the one matching the controller; it is in
# place before the binary is, as a test waiting for a background build (tests/harness/builds.py)
# takes the binary's arrival for the component's.
cp "$src/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" "$out/"
mv "$bin.tmp" "$bin"
echo "training-operator $TRAINING_OPERATOR_VERSION built in $(( $(date +%s) - start ))s: $bin"
phase go:training-operator $(( $(date +%s) - start )) built
