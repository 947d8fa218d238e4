#!/usr/bin/env bash
# Optional: a larger English corpus than the default. `make local` and `miniseries data
# prepare` need nothing installed (their default is the running Python's own standard-library
# prose, ~2.7 MB); this installs the reStructuredText sources of the Python 3.11 documentation
# (Debian package python3.11-doc, about 11 MB of English prose in ~500 files under
# /usr/share/doc/python3.11/html/_sources; license: PSF License Version 2, see
# /usr/share/doc/python3.11-doc/copyright), which needs Debian and root (apt). Use it with
#   miniseries data prepare --source /usr/share/doc/python3.11/html/_sources --out file://$PWD/miniseries-store/data/shards
# before `make local` (the local runner keeps shards it finds). Idempotent: does nothing when present.
set -euo pipefail
CORPUS_DIR=/usr/share/doc/python3.11/html/_sources
if [ -d "$CORPUS_DIR" ] && [ -n "$(ls -A "$CORPUS_DIR" 2>/dev/null)" ]; then
  echo "corpus present: $CORPUS_DIR"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3.11-doc
test -d "$CORPUS_DIR" || { echo "error: python3.11-doc installed but $CORPUS_DIR is missing" >&2; exit 1; }
echo "corpus installed: $CORPUS_DIR (miniseries data prepare --source $CORPUS_DIR --out URI)"
