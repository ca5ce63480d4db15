# OpenPrem.  The two commands that matter:
#   make run    the whole thing in one process (SQLite, in-process bus, chatd sandbox) on https://localhost:9090
#   make test   lint + type check + the test suite
# Both create .venv (python3 -m venv + pip install -e ".[dev]") when it is missing or pyproject.toml changed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
TYPED_PACKAGES := shared webapp coreapp chatd openprem bench

.PHONY: help run test lint typecheck pytest migrate bench chaos compose-smoke clean clean-data venv

help:  ## list the targets
	@echo "make run         run webapp + coreapp + chatd in one process (https://localhost:9090)"
	@echo "make test        lint, typecheck, then pytest (PYTEST_ARGS=... passes options)"
	@echo "make lint        ruff check + import-linter contracts"
	@echo "make typecheck   mypy --strict on $(TYPED_PACKAGES)"
	@echo "make venv        only create/update .venv"
	@echo "make migrate     run the webapp and coreapp migrations on the embedded database"
	@echo "make bench       load benchmark: throughput, latency, CPU, memory vs a floor (BENCH_ARGS=...)"
	@echo "make chaos       10,000 messages under coreapp kills, drops, broker and database restarts (CHAOS_ARGS=...)"
	@echo "make compose-smoke  build the images, up both compose files, README quick start, down (needs docker)"
	@echo "make clean       remove .venv and caches (keeps var/)"
	@echo "make clean-data  remove var/ (the embedded database, media, logs and the sandbox state)"

# (Re)install when the venv is missing or pyproject.toml is newer than the stamp.  pip stays quiet but
# still prints errors; a failed install leaves no stamp, so the next make tries again.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing openprem and its dev dependencies into $(VENV) (pip install -e \".[dev]\")"
	@$(PY) -m pip install --quiet --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m openprem run

migrate: $(STAMP)
	$(PY) -m openprem migrate

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --config .importlinter

typecheck: $(STAMP)
	$(VENV)/bin/mypy $(TYPED_PACKAGES)

# pytest's own summary line ends the output; exit code 5 (no tests collected) is a failure, not a pass.
pytest: $(STAMP)
	@rc=0; $(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; fi; \
	exit $$rc

# The load benchmark (bench/README.md): split deployment on MariaDB + a private Mosquitto, then the floor.
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--backend postgres --messages 20000" or "--duration 1800 --rate 100".
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# The chaos run (tests/chaos/README.md): private MariaDB + Mosquitto, faults during the load, then the invariants.
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(PY) -m tests.chaos.run $(CHAOS_ARGS)

# The compose smoke test (README "Docker compose"): images built, both compose files up, quick start (a)-(g), down.
COMPOSE_SMOKE_ARGS ?=
compose-smoke: $(STAMP)
	$(PY) -m tests.compose_smoke.run $(COMPOSE_SMOKE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -not -path "./var/*" -prune -exec rm -rf {} +

clean-data:
	rm -rf var
