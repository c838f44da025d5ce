# The README's two commands: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test check bench bench-pipeline bench-flat schemas clean browser containers promtool

# A venv in $(1) made by the interpreter $(2), holding dooralert (editable) and its test extras.
define make_venv
	$(2) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -e '.[test]'
	touch $(1)/bin/.installed
endef

$(BIN)/.installed: pyproject.toml
	$(call make_venv,$(VENV),$(PYTHON))

run: $(BIN)/.installed
	$(BIN)/dooralert dev $(ARGS)

test: check browser containers promtool
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# House style, enforced: ruff lint and format, and mypy --strict over services/ and schemas/
# (configured in pyproject.toml). `make test` runs it first, so CI does too.
check: $(BIN)/.installed
	$(BIN)/ruff check services schemas tests benchmarks
	$(BIN)/ruff format --check services schemas tests benchmarks
	$(BIN)/mypy

# The browser tests drive Debian's Chromium through Playwright (no `playwright install`: its
# browser downloads are not used). Installed when missing and we are root (CI); otherwise the
# browser tests are skipped with the reason. axe-core is vendored in tests/e2e/vendor/.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# The alert rules are checked and unit-tested with promtool (tests/deploy/test_prometheus.py),
# from Debian's `prometheus` package: installed when missing and we are root (CI), else skipped.
promtool:
	@if ! command -v promtool >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	fi

# The container test (tests/deploy/test_compose.py) builds the image and runs the compose stack
# with podman. Installed when missing and we are root (CI), by the shared script that also
# builds the local base image (no image registry here); otherwise that test is skipped.
CONTAINER_SETUP ?= ../shared/tools/container-setup
containers:
	@if [ "$$(id -u)" = 0 ] && [ -f $(CONTAINER_SETUP) ] && { ! command -v podman-compose >/dev/null \
		|| ! podman image exists localhost/debian-python:bookworm; }; then \
		bash $(CONTAINER_SETUP); \
	fi

# The benchmarks run on the interpreter a deployment runs dooralert on: the distribution's
# python3 (Debian's is built with PGO and LTO, like the container image's base), in a venv of
# their own, when it is 3.11 or newer and has venv; else $(PYTHON). A Python built from source
# without --enable-optimizations (pyenv's default) costs about a fifth more CPU per email (README,
# Benchmarks): it would measure the interpreter's build, not dooralert. BENCH_PYTHON=... to choose.
BENCH_PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo /usr/bin/python3 || echo $(PYTHON))
BENCH_VENV ?= .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin

$(BENCH_BIN)/.installed: pyproject.toml
	$(call make_venv,$(BENCH_VENV),$(BENCH_PYTHON))

# The peer benchmark (benchmarks/peer.py): dooralert beside Prometheus Alertmanager 0.25 on one
# SMTP server. Alertmanager comes from Debian (installed when missing and we are root; otherwise
# its column is skipped with the reason). `make bench-pipeline`: the pipeline against raw JetStream.
bench: $(BENCH_BIN)/.installed
	$(BENCH_BIN)/python benchmarks/peer.py $(ARGS)

bench-pipeline: $(BENCH_BIN)/.installed
	$(BENCH_BIN)/python benchmarks/pipeline.py $(ARGS)

# `make bench-flat`: every latency and start-up on an empty log beside one with 1,000,000 events
# (benchmarks/flat_log.py; ARGS="--events 100000" for a quicker run). PASS within 1.2x.
bench-flat: $(BENCH_BIN)/.installed
	$(BENCH_BIN)/python benchmarks/flat_log.py $(ARGS)

schemas: $(BIN)/.installed
	$(BIN)/python -m services.cli.schemafiles

clean:
	rm -rf $(VENV) $(BENCH_VENV) .dooralert
