# HierGeo developer commands. Each target installs what is missing first (see scripts/setup.sh).
SHELL := /bin/bash
PY := .venv/bin/python
OUT ?= demo_output
export QT_QPA_PLATFORM ?= offscreen
# Tests and the demo never download weights: keep hub libraries offline so a mistake fails loudly.
export HF_HUB_OFFLINE ?= 1

.PHONY: setup setup-dev demo test test-fast test-matrix lint format bench zip check-zip clean

setup:
	@bash scripts/setup.sh

setup-dev:
	@bash scripts/setup.sh --dev

demo: setup
	$(PY) scripts/demo.py --out "$(OUT)"

test: setup-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast lane while working: everything but the tests marked slow (tests/conftest.py says which). CI runs `test`.
test-fast: setup-dev
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The suite on newer QGIS in Debian systems built with debootstrap (root; cached in /var/cache/hiergeo-matrix):
# trixie = QGIS 3.40 LTR, sid = Debian unstable's QGIS. `make test-matrix SUITES=trixie` for one.
SUITES ?= trixie sid
test-matrix:
	bash scripts/test_matrix.sh $(SUITES)

# What `ruff format --check` covers: the whole tree.
FORMAT_PATHS ?= .

# ruff (rules and format, settings in pyproject.toml) and mypy on the engine (hiergeo_plugin/core, lenient config).
lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check $(FORMAT_PATHS)
	$(PY) -m mypy

format: setup-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: setup-dev
	$(PY) benchmarks/bench_search.py

zip:
	@bash scripts/make_zip.sh

# The zip as the QGIS plugin repository checks an upload: its zip rules, then bandit and detect-secrets on the
# unpacked zip with the site's rules (scripts/check_zip.py). CHECK_ZIP_ARGS=--publish also fails on placeholder
# links/email in metadata.txt; --online fetches the links as the site does.
check-zip: setup-dev
	$(PY) scripts/check_zip.py $(CHECK_ZIP_ARGS)

clean:
	rm -rf demo_output dist .pytest_cache .ruff_cache
