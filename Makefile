# Set-up and the two jobs of the README. `make smoke` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results/smoke-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: setup smoke cpu test perf-gate asv reports kernels-sm90 kernels-sm80 cost-sm90 clean-venv gpu-validate gpu-calibrate

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[dev,ray]'
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

# the committed resource tables (every shipped configuration; many minutes on 2 cores with a cold
# Triton cache); tests/test_kernels_aot.py recompiles a sample and fails when they are stale
TRITON_MINOR = $$($(BIN)/python -c 'import triton; print(triton.__version__.rsplit(".", 1)[0])')
kernels-sm90: setup
	$(BIN)/rnnbench kernels --target sm_90 --csv > reports/aot/kernels-sm_90-triton$(TRITON_MINOR).csv

kernels-sm80: setup
	$(BIN)/rnnbench kernels --target sm_80 --csv > reports/aot/kernels-sm_80-triton$(TRITON_MINOR).csv

# the committed per-step cost table (every goal shape and path, bf16/fp16/fp32; minutes on 2 cores)
cost-sm90: setup
	$(BIN)/rnnbench kernels --cost --target sm_90 --csv > reports/aot/cost-sm_90-triton$(TRITON_MINOR).csv

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

# Everything a first GPU session needs, in one command under the device's 10-minute limit (~8.5 min):
#   make gpu-calibrate DEVICE=h100
# GPU tests (tests/test_kernels_gpu.py and the kernel tests on CUDA) -> reports/$(DEVICE)/gpu-tests.xml,
# the grid-barrier benchmark -> reports/$(DEVICE)/barrier.csv, the gpu-core suite -> reports/$(DEVICE)/gpu-core/,
# and the cost model fitted to it -> reports/aot/cost-calibration-sm_90.json (+ gpu-core/cost-vs-measured.csv).
# Each step has a time limit (SIGINT: the suite keeps its finished cases); if the suite stops at its
# limit, run the same command again: it resumes, and the calibration refits on all rows.
GPU_TEST_LIMIT ?= 150
BARRIER_LIMIT ?= 60
SUITE_LIMIT ?= 330
CALIBRATION_LIMIT ?= 120
XDIST = $(shell $(GPU_PY) -c 'import xdist' 2>/dev/null && echo "-n 8")
gpu-calibrate:
	mkdir -p reports/$(DEVICE)
	-PYTHONPATH=. timeout -s INT -k 20 $(GPU_TEST_LIMIT) $(GPU_PY) -m pytest -q -p no:cacheprovider $(XDIST) \
		--junitxml=reports/$(DEVICE)/gpu-tests.xml tests/test_kernels_gpu.py tests/test_triton_kernels.py \
		tests/test_triton_options.py tests/test_plan.py
	-PYTHONPATH=. timeout -s INT -k 10 $(BARRIER_LIMIT) $(GPU_PY) -m rnnbench.kernels.barrier_bench --out reports/$(DEVICE)/barrier.csv
	-PYTHONPATH=. timeout -s INT -k 20 $(SUITE_LIMIT) $(GPU_PY) -m rnnbench run gpu-core --device cuda \
		--out reports/$(DEVICE)/gpu-core --resume --no-progress
	-PYTHONPATH=. $(GPU_PY) -m rnnbench report reports/$(DEVICE)/gpu-core
	PYTHONPATH=. timeout -k 10 $(CALIBRATION_LIMIT) $(GPU_PY) -m rnnbench kernels --cost --target sm_90 \
		--dtypes bfloat16,float16 --calibrate reports/$(DEVICE)/gpu-core/results.csv
