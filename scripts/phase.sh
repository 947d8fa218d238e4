# Sourced by the build scripts: one line per phase of `make test`, the lines scripts/ci_phases.py
# reads back from a CI log into the phase table (issue 30: know where the time goes).
#   phase NAME SECONDS STATE    ->  "phase go:etcd 93 built"   (STATE: built | cached | failed | ...)
# NAME has no spaces: go:<binary>, image:<name>, venv, system-deps, pytest:<group>, total.
phase() {
  echo "phase $1 $2 $3"
}
