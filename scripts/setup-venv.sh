#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv at .venv with both packages
# installed editable, plus the test tools. Idempotent: re-runs only when a
# pyproject or requirements file changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
source scripts/phase.sh
t0=$SECONDS
stamp="$VENV/.miniseries-installed"
want=$(cat operator/pyproject.toml trainer_image/pyproject.toml requirements-dev.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  phase venv $((SECONDS - t0)) cached
  exit 0
fi
echo "setup-venv: installing into $VENV (first time: torch is a large download, a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e "operator[all]" -e "trainer_image[nanochat]" -r requirements-dev.txt
echo "$want" > "$stamp"
phase venv $((SECONDS - t0)) built
