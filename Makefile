# Set-up and the two jobs of the README. `make smoke` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results/smoke-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: setup smoke cpu test kernels-sm90 kernels-sm80 clean-venv

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
