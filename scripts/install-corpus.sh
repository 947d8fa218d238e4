#!/usr/bin/env bash
# Install the English training corpus that `miniseries data prepare` reads:
# the reStructuredText sources of the Python 3.11 documentation (Debian package
# python3.11-doc, about 11 MB of English prose in 512 files under
# /usr/share/doc/python3.11/html/_sources; license: PSF License Version 2,
# see /usr/share/doc/python3.11-doc/copyright). Idempotent: does nothing when present.
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
echo "corpus installed: $CORPUS_DIR"
