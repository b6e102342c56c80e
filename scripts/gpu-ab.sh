#!/usr/bin/env bash
# This checkout (base) against a candidate version of the code (.candidate/, made by
# scripts/prepare-candidate.sh REF and carried by the device tool) on one GPU machine, in one
# command inside a wall-clock budget, so the two are timed in the same session on the same GPU:
#
#   scripts/gpu-ab.sh DEVICE [BUDGET_S] [SUITE]          e.g. scripts/gpu-ab.sh h100 540 gpu-ab
#
# Writes reports/DEVICE/ab-SUITE/:
#   machine.txt, session.log
#   candidate-tests.xml/.log     the candidate's GPU tests (TESTS, default: its kernel GPU tests)
#   precompile-base.log, precompile-candidate.log
#   barrier.csv/.log             the grid-barrier micro-benchmark of the base tree (both poll orders
#                                of rnnbench.kernels.primitives.barrier_wait, each point back to back)
#   ablation-TREE.csv/.log       the step-ablation benchmark (rnnbench.kernels.step_bench: where a
#                                cooperative step's microseconds go) of each tree that has one,
#                                candidate first, ABLATION_S seconds each (default 90)
#   base/, candidate/            the suite from each tree (results.csv, env.json), run alternately in
#                                ROUNDS slices of the time left (default 2: base, candidate, base,
#                                candidate, each resuming where it stopped), so a drift of the
#                                machine over the session falls on both
# and, where $OUT is set, ab-SUITE-DEVICE.tgz under $OUT. Afterwards, on any machine:
#   rnnbench compare reports/DEVICE/ab-SUITE/base reports/DEVICE/ab-SUITE/candidate
# STAGES (default "tests barrier ablation suite") chooses what runs. Each command runs from its tree's root with
# PYTHONPATH=. (env -C), so each imports its own rnnbench.
set -u
DEVICE=${1:?usage: scripts/gpu-ab.sh DEVICE [BUDGET_S] [SUITE]}
BUDGET=${2:-540}
SUITE=${3:-gpu-ab}
PY=${GPU_PY:-python3}
case $PY in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")";; esac  # the commands run from two directories
ROUNDS=${ROUNDS:-2}
STAGES=${STAGES:-tests barrier ablation suite}
ABLATION_S=${ABLATION_S:-90}
TESTS=${TESTS:-tests/test_kernels_gpu.py tests/test_step_bench.py tests/test_tagged_exchange.py tests/test_triton_kernels.py tests/test_triton_options.py}
ROOT=$(pwd)
DIR=reports/$DEVICE/ab-$SUITE
START=$(date +%s)
export PYTHONUNBUFFERED=1
if [ ! -f .candidate/rnnbench/__init__.py ]; then
    echo "gpu-ab: no candidate in .candidate/ (run scripts/prepare-candidate.sh REF first, and carry .candidate)" >&2
    exit 2
fi
mkdir -p "$DIR"
LOG=$DIR/session.log
: > "$LOG"
source "$(dirname "$0")/gpu-lib.sh"
trap 'pack "ab-$SUITE-$DEVICE"' EXIT
describe_machine "$DIR/machine.txt"
note "candidate: $(cat .candidate/REVISION 2>/dev/null || echo 'no REVISION file')"

PRECOMPILES=()
if wants suite; then
    for tree in base candidate; do
        path=$([ "$tree" = base ] && echo . || echo .candidate)
        stage "precompile-$tree" 200 env -C "$path" PYTHONPATH=. "$PY" -m rnnbench precompile "$SUITE" --device cuda --jobs 4 \
            > "$DIR/precompile-$tree.log" 2>&1 &
        PRECOMPILES+=($!)
    done
fi
TREES="candidate base"  # the candidate is dropped when its tests hang (below)
if wants tests; then
    stage candidate-tests 200 env -C .candidate PYTHONPATH=. "$PY" -m pytest -q -p no:cacheprovider $(xdist_flag) \
        --junitxml="$ROOT/$DIR/candidate-tests.xml" $TESTS > "$DIR/candidate-tests.log" 2>&1
    rc=$?
    tail -n 15 "$DIR/candidate-tests.log"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then  # failures are results; a run past the limit is a hang
        note "the candidate's tests ran past their limit (a hang?): no ablation or suite of the candidate; base only"
        TREES="base"
    fi
fi
for pid in "${PRECOMPILES[@]}"; do wait "$pid"; done

if wants barrier; then
    stage barrier 60 env -C . PYTHONPATH=. "$PY" -m rnnbench.kernels.barrier_bench --out "$ROOT/$DIR/barrier.csv" \
        --programs 1,2,8,32,48,96,128,132 > "$DIR/barrier.log" 2>&1
    tail -n 3 "$DIR/barrier.log"
fi

if wants ablation; then
    for tree in $TREES; do
        ablation "ablation-$tree" "$([ "$tree" = base ] && echo . || echo .candidate)" "$ROOT/$DIR/ablation-$tree.csv"
    done
fi

if wants suite; then
    set -- $TREES
    SLICES=$(( $# * ROUNDS ))
    for slice in $(seq 1 "$SLICES"); do
        tree=$([ "$#" = 1 ] || [ $(( slice % 2 )) = 1 ] && echo base || echo candidate)
        path=$([ "$tree" = base ] && echo . || echo .candidate)
        LEFT=$(( (BUDGET - $(elapsed) - 20) / (SLICES - slice + 1) ))
        if [ "$LEFT" -lt 20 ]; then  # stop rather than give the other tree the time this one lacks
            note "no time left for slice $slice ($tree) and after: $LEFT s each"
            break
        fi
        stage "suite-$tree-$slice" "$LEFT" env -C "$path" PYTHONPATH=. "$PY" -m rnnbench run "$SUITE" --device cuda \
            --out "$ROOT/$DIR/$tree" --resume --no-progress >> "$DIR/suite-$tree.log" 2>&1
        tail -n 2 "$DIR/suite-$tree.log"
    done
fi
note "done"
