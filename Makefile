# Set-up and the two jobs of the README. `make smoke` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results/smoke-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: setup smoke cpu test kernels-sm90 kernels-sm80 clean-venv gpu-validate

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[dev]'
	touch $(STAMP)

smoke: setup
	$(BIN)/rnnbench run smoke --out $(RESULTS)
	$(BIN)/rnnbench report $(RESULTS)

cpu: setup
	$(BIN)/rnnbench run cpu --out results/cpu-$(shell date -u +%Y%m%dT%H%M%SZ)

test: setup
	$(BIN)/pytest -q

kernels-sm90: setup
	$(BIN)/rnnbench kernels --target sm_90

kernels-sm80: setup
	$(BIN)/rnnbench kernels --target sm_80

clean-venv:
	rm -rf $(VENV)

# GPU validation on a lent GPU machine (torch, triton, pandas preinstalled; no network, no venv):
#   make gpu-validate DEVICE=h100 [SUITE=gpu-core]
# Run it in pieces under the device's per-command limit; --resume continues where it stopped.
DEVICE ?= gpu
SUITE ?= gpu-core
GPU_PY ?= python3
gpu-validate:
	PYTHONPATH=. $(GPU_PY) -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py tests/test_triton_options.py tests/test_plan.py
	PYTHONPATH=. $(GPU_PY) -m rnnbench run $(SUITE) --device cuda --out reports/$(DEVICE)/$(SUITE) --resume --no-progress
	PYTHONPATH=. $(GPU_PY) -m rnnbench report reports/$(DEVICE)/$(SUITE)
