# liquid_controller: set-up, demo, tests and benchmarks on a machine with no ROS installed.
# Every target sets up .venv first when needed (idempotent: a stamp file skips the work when done).
SHELL := /bin/bash
PYTHON ?= python3
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

.PHONY: setup demo test test-slow bench colcon-check clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt setup.py setup.cfg package.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(CLI) demo

test: setup
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-bench.txt
	mkdir -p bench/results
	$(CLI) bench all --json bench/results/bench.json

# Builds the package the ROS way (colcon, ament_python) in a scratch workspace under build/.
colcon-check: setup
	rm -rf build/colcon_ws && mkdir -p build/colcon_ws/src && ln -s $(CURDIR) build/colcon_ws/src/liquid_controller
	cd build/colcon_ws && PATH=$(abspath $(VENV))/bin:$$PATH colcon build --symlink-install --base-paths src
	test -x build/colcon_ws/install/liquid_controller/lib/liquid_controller/controller_node
	test -f build/colcon_ws/install/liquid_controller/share/liquid_controller/package.xml

clean:
	rm -rf $(VENV) build install log bench/results
