# Set-up and the two jobs of the README. `make smoke` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results/smoke-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: setup smoke cpu test perf-gate asv reports kernels-sm90 kernels-sm80 clean-venv gpu-validate

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

# CI's performance-regression gate (benchmarks/gate.py): this checkout against its parent commit,
# interleaved on this machine; fails on a confirmed slowdown beyond 25 %. About a minute.
perf-gate: setup
	$(BIN)/python -m benchmarks.gate

# asv: run the benchmarks in this environment, record them under this commit, publish the HTML
# (.asv/html/index.html; `$(BIN)/asv preview` serves it). GPU benchmarks show n/a without CUDA.
asv: setup
	$(BIN)/asv machine --yes
	$(BIN)/asv run --python=same --set-commit-hash $$(git rev-parse HEAD) --show-stderr
	$(BIN)/asv publish

# re-render every committed results directory (reports/<machine>/<suite>/) with the current report
reports: setup
	for dir in reports/*/*/; do if [ -f "$$dir/results.csv" ]; then $(BIN)/rnnbench report "$$dir" || exit 1; fi; done

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
	PYTHONPATH=. $(GPU_PY) -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py tests/test_plan.py
	PYTHONPATH=. $(GPU_PY) -m rnnbench run $(SUITE) --device cuda --out reports/$(DEVICE)/$(SUITE) --resume --no-progress
	PYTHONPATH=. $(GPU_PY) -m rnnbench report reports/$(DEVICE)/$(SUITE)
