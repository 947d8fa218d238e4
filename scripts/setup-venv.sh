#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv at .venv with both packages
# installed editable, plus the test tools. Idempotent: re-runs only when a
# pyproject or requirements file changed since the last install.
#
# The third-party packages (torch and the rest, ~2 GB) are installed once per set of requirements
# into ~/.cache/miniseries/venv/deps-<hash> (MINISERIES_VENV_CACHE moves it); a checkout's .venv is
# that environment copied by hard links (seconds, no space), its scripts pointed at the copy, and
# both packages of this checkout installed editable over it. A fresh clone thus gets its venv in
# ~10 s instead of ~110 s of unpacking wheels from pip's cache (issue 30). Where hard links cannot
# be made (another filesystem) the copy is a plain one.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
source scripts/phase.sh
t0=$SECONDS
stamp="$VENV/.miniseries-installed"
# what the third-party packages are (the cache's key), and with this script what the .venv is
key=$({ cat operator/pyproject.toml trainer_image/pyproject.toml requirements-dev.txt \
  scripts/pyproject_requirements.py; "$PYTHON" -VV; } | sha256sum | cut -c1-16)
want=$({ echo "$key"; cat scripts/setup-venv.sh; } | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  phase venv $((SECONDS - t0)) cached
  exit 0
fi
cache="${MINISERIES_VENV_CACHE:-$HOME/.cache/miniseries/venv}"
deps="$cache/deps-$key"
state=copied
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # two checkouts setting up at once: one installs, the other waits and copies
if [ ! -f "$deps/.complete" ]; then
  echo "setup-venv: installing the dependencies into $deps (first time: torch is a large download, a few minutes)" >&2
  # in place, not renamed afterwards: pip writes the environment's path into its scripts
  rm -rf "$deps"
  "$PYTHON" -m venv "$deps"
  "$deps/bin/python" -m pip install -q --upgrade pip
  # `operator[all]` names its own extras (miniseries[operator,science]): the requirements script leaves
  # the project itself out, so the extras are named directly
  "$deps/bin/python" -m pip install -q \
    -r <("$PYTHON" scripts/pyproject_requirements.py "operator/pyproject.toml[operator,science]" \
      "trainer_image/pyproject.toml[nanochat]") \
    -r requirements-dev.txt
  touch "$deps/.complete"
  # the older sets (~2 GB each) go: the checkouts copied from them keep their files (hard links)
  find "$cache" -maxdepth 1 -name 'deps-*' ! -name "deps-$key" -exec rm -rf {} +
  state=built
fi
echo "setup-venv: $VENV from $deps" >&2
rm -rf "$VENV"
cp -al "$deps" "$VENV" 2>/dev/null || { rm -rf "$VENV"; cp -a "$deps" "$VENV"; }
rm -f "$VENV/.complete"
exec 9>&-
# Scripts name their interpreter (and `activate` its environment) by absolute path: point them at the
# copy. sed -i writes a new file, so the cache's hard-linked original is left as it was.
here=$(cd "$VENV" && pwd)
{ find "$VENV/bin" -maxdepth 1 -type f -exec grep -lI -- "$deps" {} + || true; } | while read -r f; do sed -i "s|$deps|$here|g" "$f"; done
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "operator[all]" -e "trainer_image[nanochat]"
echo "$want" > "$stamp"
phase venv $((SECONDS - t0)) "$state"
