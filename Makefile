# The two commands a newcomer runs (see README):
#   make local   the tiny sweep, end to end, on this machine (CPU)
#   make test    the whole test suite, with the real components it starts
# Both install what they need themselves: a virtualenv under .venv, and the
# Go-built cluster binaries cached under ~/.cache/miniseries/.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv deps images local test unit lint crd dashboards tiny-traces

venv:
	@bash scripts/setup-venv.sh

# Everything the integration tests start for real (apiserver, etcd, helm, S3, Prometheus).
deps: venv
	@if [ -x scripts/install-system-deps.sh ]; then bash scripts/install-system-deps.sh; fi
	@if [ -x scripts/build-binaries.sh ]; then bash scripts/build-binaries.sh; fi
	@bash scripts/build-training-operator.sh
	@bash scripts/build-trainer.sh

# The operator and trainer images, without a Docker daemon (buildah, on a base built from Debian
# packages), cached by content hash under ~/.cache/miniseries/images/ (docs/admin.md, "Images").
images:
	@if [ -x scripts/install-system-deps.sh ]; then bash scripts/install-system-deps.sh; fi
	@bash scripts/build-images.sh

# Needs only the virtualenv: the corpus is this Python's own standard library (no root, no
# network once .venv exists); CORE too when `miniseries data fetch --eval-bundle` has run.
local: venv
	$(VENV)/bin/miniseries run examples/tiny.yaml --local

# scripts/run-tests.sh: `make deps`' steps, the Go and image builds in the background while the tests
# that need nothing built run, then the phase table (each phase's time, the slowest tests).
test:
	@VENV=$(VENV) bash scripts/run-tests.sh $(PYTEST_ARGS)

# Fast unit tests only: no cluster, no servers, nothing marked slow (make test runs those).
unit: venv
	$(VENV)/bin/pytest tests/unit -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

crd: venv
	$(VENV)/bin/miniseries crd > crds/scalingsweeps.miniseries.dev.yaml
	cp crds/scalingsweeps.miniseries.dev.yaml charts/miniseries-operator/crds/

# The Grafana dashboards (Grafana Foundation SDK, dashboards/generate.py) into dashboards/ and the chart.
dashboards: venv
	$(PY) dashboards/generate.py

# The tiny sweep's real training curves, the forecast test's fixture (tests/support/tiny_traces.json):
# trains examples/tiny.yaml on this CPU (as `make local`) in a temporary store and extracts them.
tiny-traces: venv
	$(PY) -m tests.support.make_tiny_traces
