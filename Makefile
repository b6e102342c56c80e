# Set-up and the two jobs of the README. `make smoke` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results/smoke-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: setup setup36 test36 smoke cpu test perf-gate asv reports kernels-sm90 kernels-sm80 gluon-sm90 cost-sm90 ablation-estimate clean-venv gpu-session gpu-validate gpu-report

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

# the tests in one pytest-xdist worker per core, at most TEST_WORKERS, a test file to a worker (so
# module-scoped fixtures run once, the wheel build among them; loadgroup's marks do nothing under
# pytest 9.2, whose node ids xdist 3.8 cannot suffix). 2 cores: pytest 425-519 s, 733 s serial
TEST_WORKERS ?= 4
test: setup
	$(BIN)/pytest -q -n auto --maxprocesses=$(TEST_WORKERS) --dist loadfile

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
# Triton cache); tests/test_kernels_aot.py recompiles a sample and fails when they are stale.
# KBIN=.venv36/bin (make setup36) writes the tables of Triton 3.6, the lent GPU machine's compiler
KBIN ?= $(BIN)
KERNELS = PYTHONPATH=. $(KBIN)/python -m rnnbench kernels
TRITON_MINOR = $$($(KBIN)/python -c 'import triton; print(triton.__version__.rsplit(".", 1)[0])')
kernels-sm90: setup
	$(KERNELS) --target sm_90 --csv > reports/aot/kernels-sm_90-triton$(TRITON_MINOR).csv

kernels-sm80: setup
	$(KERNELS) --target sm_80 --csv > reports/aot/kernels-sm_80-triton$(TRITON_MINOR).csv

# the Gluon LSTM forward's resource table (path="gluon", sm_90; seconds)
gluon-sm90: setup
	$(KERNELS) --gluon --target sm_90 --csv > reports/aot/gluon-sm_90-triton$(TRITON_MINOR).csv

# the committed per-step cost table (every goal shape and path, bf16/fp16/fp32; minutes on 2 cores)
cost-sm90: setup
	$(KERNELS) --cost --target sm_90 --csv > reports/aot/cost-sm_90-triton$(TRITON_MINOR).csv

# the plain kernels' shared-memory bank conflicts of their matrix loads, from their TTGIR (bf16, the
# goal shapes; a few minutes): tests/test_bank_conflicts.py recompiles a sample against it
bank-conflicts: setup
	PYTHONPATH=. $(KBIN)/python -m rnnbench.kernels.bank_conflicts --target sm_90 --csv \
		> reports/aot/bank-conflicts-sm_90-triton$(TRITON_MINOR).csv

# the step ablation's estimates (every variant and shipped kernel of its shapes, with their terms;
# about a minute): make gpu-report joins them with a measured ablation of the same code
ablation-estimate: setup
	PYTHONPATH=. $(KBIN)/python -m rnnbench.kernels.step_bench --estimate --target sm_90 \
		--out reports/aot/step-ablation-estimate-sm_90-triton$(TRITON_MINOR).csv

# The lent GPU machine's Python 3.12, torch 2.11.0 and Triton 3.6.0 beside the main venv: for Triton
# 3.6's AOT and cost tables (KBIN=.venv36/bin) and for the whole test suite under those versions (make
# test36, on the CPU: what breaks there shows here before a GPU session is spent on it).
# torch 2.11.0 from PyPI is its CUDA build (about 4.7 GB in the venv, its CUDA libraries included; it
# runs on the CPU). Triton 3.6's interpreter needs NumPy < 2.4 (launch.interpreter_refusal), so the
# venv has NumPy 2.2.6 below the project's own bound, and the one test that checks installed versions
# against that bound is left out there.
VENV36 := .venv36
# pyenv's 3.12 where there is one (its python3.12 shim runs only where 3.12 is selected), else PATH's
PYTHON36 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)
setup36: $(VENV36)/.installed

$(VENV36)/.installed: pyproject.toml constraints.txt
	$(PYTHON36) -m venv $(VENV36)
	$(VENV36)/bin/pip install --quiet --upgrade pip
	$(VENV36)/bin/pip install --quiet torch==2.11.0 triton==3.6.0
	grep -v -e '^triton' -e '^numpy' constraints.txt > $(VENV36)/constraints.txt
	$(VENV36)/bin/pip install --quiet --constraint $(VENV36)/constraints.txt -e '.[dev]'
	$(VENV36)/bin/pip install --quiet numpy==2.2.6 'setuptools>=77,<82'
	touch $@

test36: setup36
	$(VENV36)/bin/pytest -q -n auto --maxprocesses=$(TEST_WORKERS) --dist loadfile \
		--deselect tests/test_packaging.py::test_wheel_works_beside_another_module_named_kernels

clean-venv:
	rm -rf $(VENV)

# GPU validation on a lent GPU machine (torch, triton, pandas preinstalled; no network, no venv),
# one command inside a wall-clock budget (see scripts/gpu-session.sh for what it writes):
#   make gpu-session DEVICE=h200 [BUDGET=540] [SUITE=gpu-core]     tests, barrier benchmark, suite
#   make gpu-session DEVICE=h200 SUITE=gpu STAGES=suite             continue a long suite (resumes)
# then, on any machine: make gpu-report DEVICE=h200 KBIN=.venv36/bin (report + cost-model calibration,
# compiled with the GPU machine's Triton)
DEVICE ?= gpu
SUITE ?= gpu-core
BUDGET ?= 540
STAGES ?= tests fused ablation trace latency profile memory suite
GPU_PY ?= python3
gpu-session:
	GPU_PY=$(GPU_PY) STAGES="$(STAGES)" scripts/gpu-session.sh $(DEVICE) $(BUDGET) $(SUITE)

gpu-validate: gpu-session  # the earlier name

gpu-report: setup
	$(BIN)/rnnbench report reports/$(DEVICE)/$(SUITE)
	if [ -f reports/$(DEVICE)/gpu-fused/results.csv ]; then $(BIN)/rnnbench report reports/$(DEVICE)/gpu-fused; fi
	# issue 8's goals, met or not, on the suite's run; and the whole call with every inference switch (the
	# anchor's goal) and with every training switch
	$(BIN)/rnnbench goals reports/$(DEVICE)/$(SUITE) --out reports/$(DEVICE)/$(SUITE)/goals.md
	if [ -f reports/$(DEVICE)/gpu-fused/results.csv ]; then for switches in inference train; do \
		$(BIN)/rnnbench goals reports/$(DEVICE)/gpu-fused --backend triton-$$switches-switches \
		--out reports/$(DEVICE)/gpu-fused/goals-$$switches-switches.md || exit; done; fi
	# which of the kernels' switches the session's tests and timings say to set (the step ablation's variants
	# under today's names: for an older session's folder run rnnbench switches with --renames instead), beside
	# what the cost model predicted, with the calibration as it was before this session's refit below
	$(BIN)/rnnbench switches reports/$(DEVICE) --out reports/$(DEVICE)/switches.md \
		--estimate reports/aot/step-ablation-estimate-sm_90-triton$(TRITON_MINOR).csv \
		--calibration reports/aot/cost-calibration-sm_90.json
	# the latency probes' measured entries into the model's table, then the ablation's estimates with them,
	# so the calibration below is fitted on top of the measured table
	if [ -f reports/$(DEVICE)/latency.csv ]; then PYTHONPATH=. $(KBIN)/python -m rnnbench.kernels.latency_probe \
		--adopt reports/$(DEVICE)/latency.csv && $(MAKE) ablation-estimate KBIN=$(KBIN); fi
	$(KERNELS) --cost --target sm_90 --dtypes bfloat16,float16 --calibrate reports/$(DEVICE)/$(SUITE)/results.csv \
		$$([ -f reports/$(DEVICE)/step-ablation.csv ] && echo --ablation reports/$(DEVICE)/step-ablation.csv \
		reports/aot/step-ablation-estimate-sm_90-triton$(TRITON_MINOR).csv)
	if [ -f reports/$(DEVICE)/step-ablation.csv ]; then PYTHONPATH=. $(KBIN)/python -m rnnbench.harness.ablation_report \
		reports/$(DEVICE)/step-ablation.csv --estimate reports/aot/step-ablation-estimate-sm_90-triton$(TRITON_MINOR).csv \
		> reports/$(DEVICE)/step-ablation.md; fi
	# the model's phases of each traced kernel beside the trace's (its SASS compiled with KBIN's Triton)
	if [ -f reports/$(DEVICE)/trace/trace-summary.csv ]; then PYTHONPATH=. $(KBIN)/python -m rnnbench.kernels.trace_model \
		reports/$(DEVICE)/trace/trace-summary.csv --title $(DEVICE) > reports/$(DEVICE)/trace/trace-model.md; fi
	if ls reports/$(DEVICE)/memory-breakdown-*.json >/dev/null 2>&1; then PYTHONPATH=. $(KBIN)/python -m \
		rnnbench.harness.memory_breakdown --render reports/$(DEVICE)/memory-breakdown-*.json \
		> reports/$(DEVICE)/memory-breakdown.md; fi
	if ls reports/$(DEVICE)/profile-*-sass.csv >/dev/null 2>&1; then $(BIN)/python -m rnnbench.harness.profile_report \
		reports/$(DEVICE)/profile-*-sass.csv > reports/$(DEVICE)/profile.md; fi
	if [ -f reports/$(DEVICE)/gemm-memory.csv ]; then $(BIN)/python -m rnnbench.harness.gemm_memory \
		--render reports/$(DEVICE)/gemm-memory.csv > reports/$(DEVICE)/gemm-memory.md; fi
	if [ -f reports/$(DEVICE)/latency.csv ]; then PYTHONPATH=. $(KBIN)/python -m rnnbench.kernels.latency_probe \
		--render reports/$(DEVICE)/latency.csv > reports/$(DEVICE)/latency.md; fi
