# The two set-up commands of the README: `make demo` (main job on the embedded synthetic Aff-Wild2) and
# `make test` (the test suite). Each creates .venv on first use and installs the pinned requirements.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

.PHONY: venv demo test test-slow
venv: $(VENV)/installed

demo: venv
	$(PY) -m pasn_jax.main --config=configs/abaw.py:demo --workdir=runs/demo

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow
