# Quick start: `make demo` (set up, run the quickstart sweep, print its table) and `make test`.
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
TORCH   := torch==2.13.0+cpu

# Offline, CPU, loopback-only defaults for everything make runs.
export HF_HUB_OFFLINE := 1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup ops demo test layers clean-runs

setup: $(VENV)/.installed ops

# DeepSpeed's comm op, compiled once into TORCH_EXTENSIONS_DIR (~35 s) so that no stage pays for it;
# a build lock left by a killed build is taken over (matrix/methods/ops.py).
ops: $(VENV)/.installed
	$(PY) -m matrix.methods.ops

# torch first, pinned to the CPU build, and only if the environment has none: letting another
# package pull `torch` in brings GBs of CUDA wheels.
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH)
	$(PIP) install -q -c constraints.txt -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

demo: setup
	$(VENV)/bin/matrix run specs/quickstart.yaml
	$(VENV)/bin/matrix report specs/quickstart.yaml --format markdown

# The test suite includes the import-linter layers contract (tests/matrix/test_layers.py).
test: setup
	$(VENV)/bin/pytest

# The layers contract alone (pyproject.toml [tool.importlinter]), in about a second.
layers: setup
	$(VENV)/bin/lint-imports --no-cache

clean-runs:
	rm -rf runs
