# The two set-up commands of the README: `make demo` (the main job on the embedded synthetic Aff-Wild2) and
# `make test` (the test suite). Each creates .venv on first use and installs the pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

.PHONY: demo test test-slow test-ablations
demo: $(VENV)/.runtime
	$(PY) -m pasn_jax.main --config=configs/abaw.py:demo --workdir=runs/demo

test: $(VENV)/.dev
	$(PY) -m pytest -q

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m slow

test-ablations: $(VENV)/.dev
	$(PY) -m pytest -q -m ablation
