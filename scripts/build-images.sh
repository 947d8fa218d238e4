#!/usr/bin/env bash
# Build the images, operator/Dockerfile and trainer_image/Dockerfile (and, optionally, the custom trainer
# image trainer_image/nanochat.Dockerfile on top of the trainer's), without a Docker daemon:
# buildah (Debian's), as root, chroot isolation, overlay storage under the cache. No registry is
# needed either: the base image is the Dockerfiles' BASE_IMAGE build argument, by default here a
# local one built from Debian packages (mmdebstrap: python3, python3-venv, ca-certificates), and
# pip inside the build installs from PyPI.
#
# Each image is cached as a docker-archive, ready for `ctr images import`, at
#   ~/.cache/miniseries/images/<name>-<key>.tar
# where <key> hashes everything the build reads (its Dockerfile, the files it copies, the base
# image, this script's build arguments). An archive already there is not rebuilt; a changed input
# is a new key, rebuilt from buildah's layer cache (the dependency layer, torch included, is
# reused unless a pyproject changed), and older archives of that image are removed.
#
#   scripts/build-images.sh              build both, and nanochat's when its checkout is here (`make images`)
#   scripts/build-images.sh operator     one of them: operator | trainer | nanochat | base
#   scripts/build-images.sh --print      NAME_IMAGE=ref and NAME_ARCHIVE=path lines, building nothing
#   BASE_IMAGE=python:3.11-slim scripts/build-images.sh   on a registry's base instead
#
# nanochat: the trainer image plus nanochat's files and the `nanochat` extra (docs/trainer-contract.md),
# from the checkout in NANOCHAT_DIR (default ../shared/peers/nanochat beside the repository, what the
# tests use: no network for nanochat itself) or, where there is none, from GitHub at NANOCHAT_COMMIT.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MINISERIES_IMAGE_CACHE:-$HOME/.cache/miniseries/images}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/operator/pyproject.toml" | head -1)"
# The names the chart (values.image) and the ScalingSweep default (spec.resources.image) use.
OPERATOR_IMAGE="docker.io/miniseries/operator:$VERSION"
TRAINER_IMAGE="ghcr.io/miniseries/trainer:$VERSION"
# A tag of the trainer's repository, so the chart's default admission.allowedImagePrefixes covers it.
NANOCHAT_IMAGE="ghcr.io/miniseries/trainer:$VERSION-nanochat"
NANOCHAT_DIR="${NANOCHAT_DIR:-$repo/../shared/peers/nanochat}"
NANOCHAT_COMMIT="${NANOCHAT_COMMIT:-92d63d4e8bb4df75c3b71618f31ddde2378b2bcd}"
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES=python3,python3-venv,ca-certificates
BASE_KEY="$(echo "mmdebstrap minbase $DEBIAN_SUITE $BASE_PACKAGES nodoc v1" | sha256sum | cut -c1-16)"
LOCAL_BASE="localhost/miniseries-base:$BASE_KEY"
source "$repo/scripts/phase.sh"
STORE=(--root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver overlay)

inputs_of() {  # image -> the files its build reads, relative to the repo (what .dockerignore lets in)
  local paths=(scripts/pyproject_requirements.py operator/pyproject.toml operator/src)
  [[ $1 == trainer ]] && paths+=(trainer_image/pyproject.toml trainer_image/src)
  [[ $1 == nanochat ]] && paths=(scripts/pyproject_requirements.py trainer_image/pyproject.toml)
  (cd "$repo" && find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' | LC_ALL=C sort)
}

dockerfile_of() {
  case $1 in
    operator) echo operator/Dockerfile ;; trainer) echo trainer_image/Dockerfile ;; nanochat) echo trainer_image/nanochat.Dockerfile ;;
  esac
}
ref_of() { case $1 in operator) echo "$OPERATOR_IMAGE" ;; trainer) echo "$TRAINER_IMAGE" ;; nanochat) echo "$NANOCHAT_IMAGE" ;; esac; }

nanochat_source() {  # where nanochat's files come from: a checkout here (context) or GitHub
  if [[ -f "$NANOCHAT_DIR/scripts/base_train.py" ]]; then echo context; else echo github; fi
}

key_of() {  # image -> content hash of its inputs
  {
    echo "base=${BASE_IMAGE:-$LOCAL_BASE} ref=$(ref_of "$1") format=docker-archive v1"
    (cd "$repo" && sha256sum "$(dockerfile_of "$1")" .dockerignore)
    inputs_of "$1" | (cd "$repo" && xargs -d '\n' sha256sum)
    if [[ $1 == nanochat ]]; then  # the image it layers on, and nanochat's files (or the commit fetched)
      echo "trainer=$(key_of trainer) source=$(nanochat_source)"
      if [[ $(nanochat_source) == context ]]; then
        (cd "$NANOCHAT_DIR" && find . -type f ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs -d '\n' sha256sum)
      else
        echo "commit=$NANOCHAT_COMMIT"
      fi
    fi
  } | sha256sum | cut -c1-16
}

archive_of() { echo "$CACHE/$1-$(key_of "$1").tar"; }

if [[ "${1:-}" == "--print" ]]; then
  for name in operator trainer nanochat; do
    upper="$(echo "$name" | tr a-z A-Z)"
    echo "${upper}_IMAGE=$(ref_of "$name")"
    echo "${upper}_ARCHIVE=$(archive_of "$name")"
  done
  exit 0
fi

command -v buildah >/dev/null || { echo "build-images: buildah is needed (scripts/install-system-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one build at a time per cache, whoever asks (make, a test session)

build_base() {
  [[ -n "${BASE_IMAGE:-}" ]] && return 0
  buildah "${STORE[@]}" inspect --type image "$LOCAL_BASE" >/dev/null 2>&1 && return 0
  command -v mmdebstrap >/dev/null || { echo "build-images: mmdebstrap is needed (scripts/install-system-deps.sh)" >&2; exit 1; }
  local t0=$SECONDS w; w="$(mktemp -d)"
  echo "build-images: base $LOCAL_BASE from Debian $DEBIAN_SUITE ($BASE_PACKAGES) ..."
  # minbase + python: no docs, man pages or locales (what python:3.11-slim leaves out too)
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --aptopt='Acquire::Languages "none"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    --format=tar "$DEBIAN_SUITE" "$w/rootfs.tar" "$DEBIAN_MIRROR"
  local c; c="$(buildah "${STORE[@]}" from scratch)"
  buildah "${STORE[@]}" add "$c" "$w/rootfs.tar" / >/dev/null
  buildah "${STORE[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash --label "miniseries.dev/base=debian-$DEBIAN_SUITE" "$c"
  buildah "${STORE[@]}" commit --quiet --rm "$c" "$LOCAL_BASE" >/dev/null
  rm -rf "$w"
  echo "build-images: base built in $((SECONDS - t0)) s"
  phase image:base $((SECONDS - t0)) built
}

build_image() {  # name
  local name=$1 archive ref t0=$SECONDS
  archive="$(archive_of "$name")"; ref="$(ref_of "$name")"
  if [[ -s "$archive" ]]; then
    echo "build-images: $name cached: $archive"
    phase "image:$name" $((SECONDS - t0)) cached
    return 0
  fi
  build_base
  echo "build-images: building $ref ($(dockerfile_of "$name")) ..."
  local args=(--isolation chroot --layers --build-arg "BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}")
  # Behind a TLS-inspecting proxy pip needs the host's CA bundle: mounted over the image's own
  # bundle for the RUN steps only, so nothing of it stays in a layer.
  if [[ -n "${PIP_CERT:-}" && -f "$PIP_CERT" ]]; then
    args+=(--volume "$PIP_CERT:/etc/ssl/certs/ca-certificates.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  fi
  if [[ $name == nanochat ]]; then
    build_image trainer  # what it layers on, found in buildah's storage (or loaded from its archive)
    buildah "${STORE[@]}" inspect --type image "$TRAINER_IMAGE" >/dev/null 2>&1 \
      || buildah "${STORE[@]}" pull --quiet "docker-archive:$(archive_of trainer)" >/dev/null
    args+=(--build-arg "TRAINER_IMAGE=$TRAINER_IMAGE" --build-arg "NANOCHAT_SOURCE=$(nanochat_source)"
      --build-arg "NANOCHAT_COMMIT=$NANOCHAT_COMMIT")
    [[ $(nanochat_source) == context ]] && args+=(--build-context "nanochat=$(cd "$NANOCHAT_DIR" && pwd)")
  fi
  (cd "$repo" && buildah "${STORE[@]}" build "${args[@]}" -f "$(dockerfile_of "$name")" -t "$ref" .)
  rm -f "$CACHE/$name"-*.tar "$CACHE/$name"-*.tar.tmp
  buildah "${STORE[@]}" push --quiet "$ref" "docker-archive:$archive.tmp:$ref"
  mv -f "$archive.tmp" "$archive"
  echo "build-images: $name built in $((SECONDS - t0)) s: $archive ($(du -m "$archive" | cut -f1) MiB)"
  phase "image:$name" $((SECONDS - t0)) built
}

want=("$@")
if [[ ${#want[@]} -eq 0 ]]; then
  want=(operator trainer)
  [[ $(nanochat_source) == context ]] && want+=(nanochat)  # the tests' custom trainer image, offline
fi
for name in "${want[@]}"; do
  case $name in
    base) build_base ;;
    operator | trainer | nanochat) build_image "$name" ;;
    *) echo "build-images: unknown image $name (operator, trainer, nanochat or base)" >&2; exit 2 ;;
  esac
done
