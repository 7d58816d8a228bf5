# HierGeo developer commands. Each target installs what is missing first (see scripts/setup.sh).
SHELL := /bin/bash
PY := .venv/bin/python
OUT ?= demo_output
export QT_QPA_PLATFORM ?= offscreen
# Tests and the demo never download weights: keep hub libraries offline so a mistake fails loudly.
export HF_HUB_OFFLINE ?= 1

.PHONY: setup setup-dev demo test lint bench zip clean

setup:
	@bash scripts/setup.sh

setup-dev:
	@bash scripts/setup.sh --dev

demo: setup
	$(PY) scripts/demo.py --out "$(OUT)"

test: setup-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup-dev
	$(PY) -m ruff check .

bench: setup-dev
	$(PY) benchmarks/bench_search.py

zip:
	@bash scripts/make_zip.sh

clean:
	rm -rf demo_output dist .pytest_cache .ruff_cache
