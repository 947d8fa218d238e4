#!/usr/bin/env bash
# Build the real components the tests start, from their Go modules, with this
# machine's Go toolchain (nothing is downloaded from release pages), and cache
# them under ~/.cache/miniseries/bin/<name>-<version>/<binary>.
#
# Idempotent: a binary already in the cache is not rebuilt. Builds go to a temp
# dir and are moved into place at the end, so an interrupted build leaves no
# half-written binary behind. Builds run one after another: on 2 cores a second
# concurrent Go build only makes both slower.
#
#   scripts/build-binaries.sh            build whatever is missing
#   scripts/build-binaries.sh --print    print the cached paths (KEY=path lines)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
source "$here/phase.sh"
CACHE="${MINISERIES_BIN_CACHE:-$HOME/.cache/miniseries/bin}"
export GOFLAGS="${GOFLAGS:--trimpath}" CGO_ENABLED=0
LDFLAGS="-s -w"

path_of() { echo "$CACHE/$1-$2/$1"; }

if [[ "${1:-}" == "--print" ]]; then
  for pair in "kube-apiserver $KUBERNETES_VERSION" "kube-controller-manager $KUBERNETES_VERSION" \
              "kube-scheduler $KUBERNETES_VERSION" "kubectl $KUBERNETES_VERSION" "kubelet $KUBERNETES_VERSION" \
              "pause $PAUSE_VERSION" "etcd $ETCD_VERSION" \
              "kwok $KWOK_VERSION" "helm $HELM_VERSION" "versitygw $VERSITYGW_VERSION" "kueue $KUEUE_VERSION"; do
    set -- $pair; echo "$1=$(path_of "$1" "$2")"
  done
  exit 0
fi

command -v go >/dev/null || { echo "build-binaries: the Go toolchain is needed (go not on PATH)" >&2; exit 1; }

have() { [[ -x "$(path_of "$1" "$2")" ]]; }

install_bin() {  # name version built-file
  local dest; dest="$(dirname "$(path_of "$1" "$2")")"
  mkdir -p "$dest"
  mv -f "$3" "$dest/$1.tmp" && mv -f "$dest/$1.tmp" "$dest/$1"
}

timed() {  # name version command...: builds one binary, then its phase line (scripts/phase.sh)
  local t0=$SECONDS
  echo "build-binaries: building $1 $2 ..."
  "${@:3}"
  echo "build-binaries: $1 $2 built in $((SECONDS - t0)) s"
  phase "go:$1" $((SECONDS - t0)) built
}

cached() {  # name version: the phase line of a binary found in the cache
  echo "build-binaries: $1 $2 cached"
  phase "go:$1" 0 cached
}

# A throwaway module whose go.mod requires the wanted module, so `go build` of its
# packages resolves dependencies exactly as pinned by that module's go.sum.
scratch_module() {  # dir
  mkdir -p "$1" && (cd "$1" && go mod init miniseries.local/build >/dev/null 2>&1)
}

build_kubernetes() {
  local names=() n
  for n in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
    if have "$n" "$KUBERNETES_VERSION"; then cached "$n" "$KUBERNETES_VERSION"; else names+=("$n"); fi
  done
  [[ ${#names[@]} -eq 0 ]] && return 0
  local w; w="$(mktemp -d)"; trap 'rm -rf "$w"' RETURN
  scratch_module "$w"
  (
    cd "$w"
    local t0=$SECONDS
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" > dl.json
    local src; src="$(python3 -c 'import json,sys; print(json.load(open("dl.json"))["Dir"])')"
    # k8s.io/kubernetes points its staging modules at ./staging/src/...; a consumer
    # must map each of them to the published k8s.io/<name> release instead.
    {
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo "replace ("
      grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$src/go.mod" \
        | awk -v v="$KUBERNETES_STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } >> go.mod
    printf '//go:build tools\n\npackage tools\n\nimport (\n' > tools.go
    for n in "${names[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$n" >> tools.go; done
    printf ')\n' >> tools.go
    go mod tidy >/dev/null 2>&1 || go mod tidy
    phase go:kubernetes-modules $((SECONDS - t0)) built  # the download and resolution the builds share
    local ver="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
    for n in "${names[@]}"; do
      timed "$n" "$KUBERNETES_VERSION" go build -ldflags "$LDFLAGS $ver" -o "$w/out-$n" "k8s.io/kubernetes/cmd/$n"
      install_bin "$n" "$KUBERNETES_VERSION" "$w/out-$n"
    done
  )
}

build_etcd() {
  have etcd "$ETCD_VERSION" && { cached etcd "$ETCD_VERSION"; return 0; }
  local w; w="$(mktemp -d)"; trap 'rm -rf "$w"' RETURN
  scratch_module "$w"
  (
    cd "$w"
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
    local t0=$SECONDS
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1 || go mod tidy
    phase go:etcd-modules $((SECONDS - t0)) built
    timed etcd "$ETCD_VERSION" go build -ldflags "$LDFLAGS" -o "$w/out" .
    install_bin etcd "$ETCD_VERSION" "$w/out"
  )
}

# Modules without replace directives build directly with `go install pkg@version`.
go_install() {  # name version package
  have "$1" "$2" && { cached "$1" "$2"; return 0; }
  local w; w="$(mktemp -d)"; trap 'rm -rf "$w"' RETURN
  timed "$1" "$2" env GOBIN="$w" go install -ldflags "$LDFLAGS" "$3@$2"
  install_bin "$1" "$2" "$w/$(basename "$3")"
}

# kwok v0.8 starts only with Stages given; its "fast" set (node-initialize, node heartbeat with a
# Lease, pod ready/complete/delete) is published YAML in its module: keep it beside the binary.
kwok_stages() {
  local out; out="$(dirname "$(path_of kwok "$KWOK_VERSION")")/stages.yaml"
  [[ -s "$out" ]] && return 0
  local dir; dir="$(cd "$(mktemp -d)" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  local f
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$dir/kustomize/stage/$f"
  done > "$out.tmp"
  mv -f "$out.tmp" "$out"
}

# Kueue's CRDs and webhook configurations as its module publishes them (config/components): kept
# beside the binary, so the harness (tests/harness/kueue.py) applies the ones matching the controller.
kueue_manifests() {
  local out; out="$(dirname "$(path_of kueue "$KUEUE_VERSION")")"
  [[ -s "$out/webhook/manifests.yaml" && -d "$out/crd" ]] && return 0
  local dir  # `go mod download` outside any module: from an empty directory
  dir="$(cd "$(mktemp -d)" && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' && rmdir "$PWD")"
  rm -rf "$out/crd.tmp" "$out/webhook.tmp" && mkdir -p "$out/crd.tmp" "$out/webhook.tmp"
  # crd/: the CRDs (bases) and the conversion-webhook patches its kustomization applies
  cp "$dir/config/components/crd/kustomization.yaml" "$out/crd.tmp/"
  cp -r "$dir/config/components/crd/bases" "$dir/config/components/crd/patches" "$out/crd.tmp/"
  # webhook/: the Mutating/ValidatingWebhookConfigurations and the namespaceSelector patch
  cp "$dir/config/components/webhook/manifests.yaml" "$dir/config/components/webhook/kustomization.yaml" "$out/webhook.tmp/"
  cp "$dir/LICENSE" "$out/LICENSE.kueue"
  chmod -R u+w "$out/crd.tmp" "$out/webhook.tmp"
  rm -rf "$out/crd" "$out/webhook" && mv "$out/crd.tmp" "$out/crd" && mv "$out/webhook.tmp" "$out/webhook"
}

# The real node's sandbox ("pause") image holds one static binary that waits for a signal; no
# registry is reachable for registry.k8s.io/pause, so tests/harness/node.py wraps this one in an OCI archive.
build_pause() {
  have pause "$PAUSE_VERSION" && { cached pause "$PAUSE_VERSION"; return 0; }
  local w; w="$(mktemp -d)"; trap 'rm -rf "$w"' RETURN
  scratch_module "$w"
  (
    cd "$w"
    cat > main.go <<'GO'
// pause: the pod sandbox's process. It holds the pod's namespaces and exits on SIGINT/SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
GO
    timed pause "$PAUSE_VERSION" go build -ldflags "$LDFLAGS" -o "$w/out" .
    install_bin pause "$PAUSE_VERSION" "$w/out"
  )
}

t0=$SECONDS
build_pause
build_etcd
build_kubernetes
go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
kwok_stages
go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
go_install versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw
go_install kueue "$KUEUE_VERSION" sigs.k8s.io/kueue/cmd/kueue
kueue_manifests
if [[ -x "$here/build-training-operator.sh" ]]; then bash "$here/build-training-operator.sh"; fi
# The Trainer v2 backend's controllers (JobSet, the trainer): tests marked `trainjob`.
if [[ -x "$here/build-trainer.sh" ]]; then bash "$here/build-trainer.sh"; fi
# The Go judge of tests/unit/test_grammar.py builds offline (GOPROXY=off): its modules are fetched here.
t1=$SECONDS
(cd "$here/../tests/unit/go_grammar" && go mod download)
phase go:grammar-modules $((SECONDS - t1)) fetched
echo "build-binaries: all cached under $CACHE ($((SECONDS - t0)) s)"
phase go:all $((SECONDS - t0)) done
