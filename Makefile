# The two set-up commands of the README: `make demo` (the main job on the embedded synthetic data: the prior's two
# stages, then PASN; launch/demo.sh) and `make test` (the test suite). Each creates .venv on first use and installs
# the pinned requirements; ACCEL=cuda12, cuda13 or tpu adds the accelerator's jax plugin
# (requirements-$(ACCEL).txt), e.g. `make demo ACCEL=cuda12`.
PYTHON ?= python3
ACCEL ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(if $(filter cpu,$(ACCEL)),requirements.txt,requirements-$(ACCEL).txt)

$(VENV)/.runtime-$(ACCEL): requirements.txt $(RUNTIME)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(RUNTIME)
	touch $@

$(VENV)/.runtime: $(VENV)/.runtime-$(ACCEL)
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt requirements-gcs.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

.PHONY: demo report test test-slow test-ablations test-scale
demo: $(VENV)/.runtime
	PYTHON=$(PY) launch/demo.sh runs/demo

# The report of the demo and its ablations (README, "Pictures"): each ablation trains once (a finished one only
# evaluates again), then one HTML page with its figures in runs/report.
report: $(VENV)/.runtime
	for v in random_prior no_prior no_streaming; do \
		$(PY) -m pasn_jax.main --config=configs/abaw.py:demo,$$v --workdir=runs/demo_$$v || exit 1; done
	$(PY) -m pasn_jax.report --workdirs runs/demo/pasn runs/demo_random_prior runs/demo_no_prior \
		runs/demo_no_streaming --names "trained prior,random prior,no prior,no streaming" --out runs/report

test: $(VENV)/.dev
	$(PY) -m pytest -q

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m slow

test-ablations: $(VENV)/.dev
	$(PY) -m pytest -q -m ablation

test-scale: $(VENV)/.dev
	$(PY) -m pytest -q -s -m scale
