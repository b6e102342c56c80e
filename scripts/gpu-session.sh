#!/usr/bin/env bash
# One GPU validation session in one command, inside a fixed wall-clock budget (a lent GPU machine
# runs one command for at most 10 minutes, and its time is scarce):
#
#   scripts/gpu-session.sh DEVICE [BUDGET_S] [SUITE]      e.g. scripts/gpu-session.sh h200 540
#   STAGES=suite scripts/gpu-session.sh h200 540 gpu     continue a long suite only (it resumes)
#   TESTS="tests/test_triton_options.py" scripts/...      another set of test files
#
# Writes reports/DEVICE/:
#   machine.txt          nvidia-smi, torch/triton/CUDA versions, CPU count
#   gpu-tests.xml/.log   the Triton kernels against torch.nn (cuDNN) and float64 on CUDA
#                        (default TESTS: tests/test_kernels_gpu.py, test_step_bench.py,
#                        test_tagged_exchange.py, test_triton_kernels.py,
#                        test_triton_options.py, test_drop_in.py, test_plan.py, test_precompile.py,
#                        test_memory_breakdown.py, test_step_trace.py, test_overlapped_projection.py,
#                        test_overlapped_gradients.py), but the tests marked fused_input, tagged_exchange,
#                        mma_chains, tagged_groups, tagged_thread_poll, local_gates, tagged_training,
#                        streamed_copies, overlapped_projection, overlapped_gradients or first_warp_poll
#   gpu-tests-STAGE.xml/.log  those, a stage each (a hang costs no other test; where one fails, the
#                        ablation leaves its variants out, the gpu-fused suite withholds its backend, the
#                        profiles skip it, the memory stage the fused kernel):
#                        tagged (75 s, first: the planner takes the tagged exchange in inference up to
#                          H=768; where its tests fail every later stage runs the grid barrier,
#                          RNNBENCH_TAGGED_EXCHANGE=off, and the tagged forward's own stages below do not run);
#                        (the main stage, 200 s);
#                        thread-poll (45 s: the tagged loader's threads polling alone, where the tagged
#                          exchange passed; alone, as its tests include the step trace's %clock64
#                          phases; where they fail the ablation leaves out
#                          real_gluon_tagged_thread_poll(_delayed), gpu-fused withholds triton-thread-poll);
#                        then all at once, 2 workers and 150 s each (one after the other they took
#                        longer than the main stage): first-warp (the grid barrier polled by the first
#                          warp alone; real_*first_warp), local-gates (the gates split inside each
#                          warp; where they fail the ablation leaves out real_gluon_tagged_local_gates,
#                          and where they or the thread polls' fail
#                          real_gluon_tagged_thread_poll_local_gates and gpu-fused's triton-local-gates),
#                          tagged-training (the training forward with the tagged exchange;
#                          real_gluon_tagged_train), chains (the tagged forward's two MMA chains;
#                          real_gluon_tagged_two_chains), groups (the tagged loader's hand-over in groups
#                          of tiles; real_gluon_tagged_groups_4), the last four only where the tagged
#                          exchange passed; streamed (the Gluon backward's copies streamed by a copier
#                          warp; real_gluon_bwd_streamed), overlapped (the input projection beside the
#                          Gluon forward; gpu-fused's triton-overlapped), overlapped-grads (the
#                          backward's GEMMs beside its recurrence; triton-overlapped-grads; where any of
#                          the training switches' stages fails, gpu-fused withholds
#                          triton-train-switches) and fused (the input projection fused into the Gluon
#                          forward; real_gluon_fused_input, triton-fused)
#   precompile.log       the suite's Triton kernels compiled in parallel (rnnbench precompile),
#                        concurrently with the tests, so the suite does not compile serially
#   barrier.csv/.log     the grid-barrier micro-benchmark
#   latency.csv/.log     the latency probes: each primitive of a step timed alone (L2 load, acquire,
#                        release, signal between SMs, CTA barrier, TMA copy, warpgroup MMAs) beside
#                        the cost model's estimate of the same loop (rnnbench.kernels.latency_probe)
#   step-ablation.csv/.log  where a cooperative step's microseconds go (rnnbench.kernels.step_bench,
#                        where the checkout has it), ABLATION_S seconds (default 120); its never-run
#                        variants (step_bench.DEFERRED) after every shape's others
#   trace/, trace.log    the tagged and the barrier Gluon forward traced inside the kernel at H=768
#                        and 256, B=16 (rnnbench.kernels.step_trace, 90 s): each step's cycles by
#                        phase (load, reloads, hand-over, MMAs, gates), trace.md, trace-*.csv;
#                        the tagged one only where its tests passed, its threads polling alone, its
#                        warp-local gates, two MMA chains and its hand-over in groups where theirs did
#   memory-breakdown-BACKEND.json/.log  the blocks alive at the peak of one LSTM call (bf16,
#                        H=64/768, B=16/64, T=1024, fwd and fwd_bwd) by allocating line, Triton
#                        and torch.nn (rnnbench.harness.memory_breakdown)
#   gemm-memory.csv/.log what each formulation of the backward's dW_hh GEMM allocates beyond its
#                        output, and its time (rnnbench.harness.gemm_memory); and
#   memory-breakdown-triton-F.json/.log  the Triton training peaks with each other formulation F
#                        (WEIGHT_GRADS, default: addmm, the cuBLAS one shipped before the Triton GEMM)
#   memory-breakdown-triton-fused.json/.log  the Triton peaks (H=512/768, B=16/64, fwd and fwd_bwd)
#                        with the Gluon forward's input projection fused, where its tests passed
#   gpu-fused/, gpu-fused.log  the gpu-fused suite (40 s to precompile, 90 to run; where the tests
#                        of either kernel passed; before the step ablation): the whole call with
#                        every never-run inference switch at once first (triton-inference-switches,
#                        withheld where the tagged exchange's, thread poll's, local gates' or
#                        overlapped projection's tests failed), with the input projection fused
#                        and with the tagged exchange against the planner's and torch.nn
#   SUITE/, SUITE.log    the suite's results.csv and env.json (--resume: a rerun continues it)
#   profile-NAME.ncu-rep, -sass.csv, -details.csv, .log  Nsight Compute on one call of each
#                        PROFILES case (BACKEND:H:B:MODE[:KERNEL_REGEX[:DTYPE]]; by default also
#                        cuDNN's fp16 LSTM at the anchor, the 2.02 µs the goal is set by: how its
#                        persistent kernel exchanges the state; its regex skips persistRNN_init_negMax,
#                        the one kernel 7caf667's plain regex caught), warp states sampled per
#                        SASS instruction; the CSVs are ncu's source page (SASS) and details page
#                        (about 15 s a case on an H200; make gpu-report renders them); by default
#                        also triton-tagged:768:16:fwd first and triton-fused:768:16:fwd last, each
#                        where its tests passed
#   session.log          what ran, with each stage's seconds and exit status
# and, where $OUT is set (the device tool), reports-DEVICE.tgz of all of it under $OUT.
# The report and the cost-model calibration need no GPU: render them afterwards on any machine
# (make gpu-report DEVICE=...). Each stage has its own limit, at most what is left of BUDGET_S (30 s
# kept for packing; a stage with less than 10 s left is skipped, "no time left for NAME" in
# session.log: run it in a second call), and the suite gets what is left, stopped with SIGINT so it
# keeps every finished case. The stages run in this order: tests, barrier (only when named in
# STAGES), fused, ablation, trace, latency, profile, memory, suite. To resume on a fresh machine, the
# partial results must be in the working tree that travels (unpack the previous tarball first).
set -u
DEVICE=${1:?usage: scripts/gpu-session.sh DEVICE [BUDGET_S] [SUITE]}
BUDGET=${2:-540}
SUITE=${3:-gpu-core}
PY=${GPU_PY:-python3}
STAGES=${STAGES:-tests fused ablation trace latency profile memory suite}
ABLATION_S=${ABLATION_S:-120}
PROFILES_SET=${PROFILES:-}
PROFILES=${PROFILES:-triton-barrier:768:16:fwd torch:768:16:fwd:^(?!persistRNN_init).*(RNN|LSTM|rnn|lstm):float16 triton-cooperative:768:16:fwd triton-gluon:1024:64:fwd triton:768:16:fwd_bwd:lstm_backward.*kernel triton-cooperative:768:64:fwd}
WEIGHT_GRADS=${WEIGHT_GRADS:-addmm}
TESTS=${TESTS:-tests/test_kernels_gpu.py tests/test_step_bench.py tests/test_tagged_exchange.py tests/test_triton_kernels.py tests/test_triton_options.py tests/test_drop_in.py tests/test_plan.py tests/test_precompile.py tests/test_memory_breakdown.py tests/test_step_trace.py tests/test_overlapped_projection.py tests/test_overlapped_gradients.py}
DIR=reports/$DEVICE
START=$(date +%s)
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$DIR"
source "$(dirname "$0")/gpu-lib.sh"
LOG=$DIR/session.log
# a call that runs the tests starts the session's log; a later one (STAGES without tests, the first
# call's reports unpacked into the tree) adds to it and reads its test stages' results from it (EARLIER:
# the log has some)
EARLIER=0
if wants tests || [ ! -f "$LOG" ]; then
    : > "$LOG"
else
    grep -qE '\] (start|no time left for) gpu-tests' "$LOG" && EARLIER=1
    echo "--- another call: STAGES=$STAGES" >> "$LOG"
fi

trap 'pack "reports-$DEVICE"' EXIT
describe_machine "$DIR/machine.txt"

XDIST=$(xdist_flag)
# the switches' test stages run at once, with 2 workers each (2-16 tests each), every one under its own
# limit
SWITCH_XDIST=$(xdist_flag 2)
SWITCH_TESTS_S=${SWITCH_TESTS_S:-150}
TEST_JOBS=()

# switch_tests RC_VAR NAME MARKER FILE...: the GPU tests of one never-run switch, those of FILE... marked
# MARKER, as stage gpu-tests-NAME (JUnit XML and log: gpu-tests-NAME.xml/.log), started in the
# background; wait_for_test_stages sets RC_VAR to its exit status
switch_tests() {
    local var=$1 name=gpu-tests-$2 marker=$3; shift 3
    stage "$name" "$SWITCH_TESTS_S" "$PY" -m pytest -q -p no:cacheprovider $SWITCH_XDIST \
        --junitxml="$DIR/$name.xml" -m "$marker" "$@" > "$DIR/$name.log" 2>&1 &
    TEST_JOBS+=("$var $name $!")
}

# wait_for_test_stages: wait for every switch's test stage, set each one's RC_VAR, show each log's end
wait_for_test_stages() {
    local job var name pid
    for job in "${TEST_JOBS[@]}"; do
        read -r var name pid <<< "$job"
        wait "$pid"
        printf -v "$var" '%s' "$?"
        tail -n 10 "$DIR/$name.log"
    done
    TEST_JOBS=()
}
PRECOMPILE=
if wants suite; then
    stage precompile 200 "$PY" -m rnnbench precompile "$SUITE" --device cuda --jobs 8 > "$DIR/precompile.log" 2>&1 &
    PRECOMPILE=$!
fi
if wants tests; then
    # the tagged exchange first: the planner takes it in inference up to H=768 (GLUON_TAGGED_EXCHANGE "auto"),
    # so where its tests fail or hang (its mbarrier waits have no timeout) everything after runs the
    # grid barrier instead (RNNBENCH_TAGGED_EXCHANGE=off), the main tests included
    stage gpu-tests-tagged 75 "$PY" -m pytest -q -p no:cacheprovider $XDIST --junitxml="$DIR/gpu-tests-tagged.xml" \
        -m tagged_exchange tests/test_kernels_gpu.py > "$DIR/gpu-tests-tagged.log" 2>&1
    TAGGED_RC=$?
    tail -n 15 "$DIR/gpu-tests-tagged.log"
    [ "$TAGGED_RC" -eq 0 ] || export RNNBENCH_TAGGED_EXCHANGE=off
    stage gpu-tests 200 "$PY" -m pytest -q -p no:cacheprovider $XDIST --junitxml="$DIR/gpu-tests.xml" \
        -m "not fused_input and not tagged_exchange and not mma_chains and not tagged_groups and not tagged_thread_poll and not local_gates and not tagged_training and not streamed_copies and not overlapped_projection and not overlapped_gradients and not first_warp_poll" \
        $TESTS \
        > "$DIR/gpu-tests.log" 2>&1
    tail -n 25 "$DIR/gpu-tests.log"
    # the tagged loader's threads polling alone (the model's largest cut of the anchor's step), alone too,
    # where the tagged exchange passed: its tests include the step trace's, whose %clock64 phases another
    # process's time slice on the GPU could upset
    if [ "$TAGGED_RC" -eq 0 ]; then
        stage gpu-tests-thread-poll 45 "$PY" -m pytest -q -p no:cacheprovider $XDIST \
            --junitxml="$DIR/gpu-tests-thread-poll.xml" -m tagged_thread_poll tests/test_kernels_gpu.py \
            tests/test_step_trace.py > "$DIR/gpu-tests-thread-poll.log" 2>&1
        THREAD_POLL_RC=$?
        tail -n 10 "$DIR/gpu-tests-thread-poll.log"
    fi
    # then a stage for each other never-run switch, all at once (2 workers each), so that a failure or
    # hang in one costs no other: one after the other, with a pytest start-up each, nine of them took
    # longer than the main stage (~20 s each); the main stage runs alone, as on every GPU so far, so its
    # timed checks (the barrier benchmark's) see no more contention than they did there.
    #
    # The grid barrier polled by each program's first warp alone (every cooperative kernel): the model's
    # largest cut of the training step (the Gluon backward's barrier, 48 producers of 8 warps at H=768
    # B=16) and of the plain forward's
    switch_tests FIRST_WARP_RC first-warp first_warp_poll tests/test_kernels_gpu.py
    # the tagged forward's other switches, only where the tagged exchange passed (so that a failure there
    # leaves its timings alone): its gates split inside each warp, the training forward with the
    # exchange, its two MMA chains, its loader's hand-over in groups of tiles
    if [ "$TAGGED_RC" -eq 0 ]; then
        switch_tests LOCAL_GATES_RC local-gates local_gates tests/test_kernels_gpu.py
        switch_tests TAGGED_TRAINING_RC tagged-training tagged_training tests/test_kernels_gpu.py
        switch_tests CHAINS_RC chains mma_chains tests/test_kernels_gpu.py
        switch_tests GROUPS_RC groups tagged_groups tests/test_kernels_gpu.py
    fi
    # the Gluon backward's copies streamed by a copier warp, the input projection beside the Gluon forward,
    # the backward's GEMMs beside its recurrence, and the input projection fused into the Gluon forward (on
    # a GPU once, 7caf667: its kernel tests passed, two memory tests failed)
    switch_tests STREAMED_RC streamed streamed_copies tests/test_kernels_gpu.py
    switch_tests OVERLAPPED_RC overlapped overlapped_projection tests/test_overlapped_projection.py
    switch_tests OVERLAPPED_GRADS_RC overlapped-grads overlapped_gradients tests/test_overlapped_gradients.py
    switch_tests FUSED_RC fused fused_input tests/test_kernels_gpu.py tests/test_memory_breakdown.py
    wait_for_test_stages
fi
if ! wants tests && [ "$EARLIER" = 0 ]; then
    # no test stage ran in this session (no earlier log, or one without tests): the never-run switches'
    # kernels are left out and their backends withheld (the shipped tagged exchange runs as planned); run
    # the tests, or unpack the earlier call's reports into the tree first
    note "no earlier call's test results in $LOG: the never-run switches' kernels are left out (exit 125 below: not tested)"
    for var in THREAD_POLL_RC FIRST_WARP_RC LOCAL_GATES_RC TAGGED_TRAINING_RC CHAINS_RC GROUPS_RC STREAMED_RC \
            OVERLAPPED_RC OVERLAPPED_GRADS_RC FUSED_RC; do
        printf -v "$var" '%s' 125
    done
elif ! wants tests; then
    # a later call: each test stage's status as the earlier call logged it, so that what failed, hung or
    # had no time there is left out here too (a stage no call started counts as passed, as before)
    for pair in TAGGED_RC:tagged THREAD_POLL_RC:thread-poll FIRST_WARP_RC:first-warp LOCAL_GATES_RC:local-gates \
            TAGGED_TRAINING_RC:tagged-training CHAINS_RC:chains GROUPS_RC:groups STREAMED_RC:streamed \
            OVERLAPPED_RC:overlapped OVERLAPPED_GRADS_RC:overlapped-grads FUSED_RC:fused; do
        status=$(earlier_status "gpu-tests-${pair#*:}")
        [ -n "$status" ] && printf -v "${pair%%:*}" '%s' "$status"
    done
    [ "${TAGGED_RC:-0}" -eq 0 ] || export RNNBENCH_TAGGED_EXCHANGE=off
fi
# the fused input projection and the tagged exchange are each timed and measured below only if their
# tests passed (or did not run): the ablation leaves out, and the gpu-fused suite withholds
# (harness/registry.py's RNNBENCH_WITHHOLD_BACKENDS), the one whose tests failed
FUSED_OK=$([ "${FUSED_RC:-0}" -eq 0 ] && echo 1 || echo 0)
TAGGED_OK=$([ "${TAGGED_RC:-0}" -eq 0 ] && echo 1 || echo 0)
LEFT_OUT=
if [ "$FUSED_OK" = 0 ]; then
    note "the fused input projection failed its tests (exit $FUSED_RC): not timed or measured"
    LEFT_OUT=real_gluon_fused_input; export RNNBENCH_WITHHOLD_BACKENDS=triton-fused
fi
if [ "$TAGGED_OK" = 0 ]; then
    note "the tagged exchange failed its tests (exit $TAGGED_RC): not timed or measured; the planner runs the grid barrier (RNNBENCH_TAGGED_EXCHANGE=off)"
    LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged,real_gluon_tagged_delayed,real_gluon_tagged_delayed_300,real_gluon_tagged_four_loaders,real_gluon_tagged_two_chains,real_gluon_tagged_groups_4,real_gluon_tagged_thread_poll,real_gluon_tagged_thread_poll_delayed,real_gluon_tagged_local_gates,real_gluon_tagged_thread_poll_local_gates,real_gluon_tagged_train
    export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-tagged,triton-thread-poll,triton-local-gates
else
    if [ "${CHAINS_RC:-0}" -ne 0 ]; then
        note "the tagged forward's two MMA chains failed their tests (exit $CHAINS_RC): not timed"
        LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged_two_chains
    fi
    if [ "${THREAD_POLL_RC:-0}" -ne 0 ]; then
        note "the tagged loader's threads polling alone failed their tests (exit $THREAD_POLL_RC): not timed or measured"
        LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged_thread_poll,real_gluon_tagged_thread_poll_delayed
        export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-thread-poll
    fi
    if [ "${LOCAL_GATES_RC:-0}" -ne 0 ]; then
        note "the tagged forward's gates split inside each warp failed their tests (exit $LOCAL_GATES_RC): not timed or measured"
        LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged_local_gates
    fi
    # the two together: where either failed
    if [ "${LOCAL_GATES_RC:-0}" -ne 0 ] || [ "${THREAD_POLL_RC:-0}" -ne 0 ]; then
        LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged_thread_poll_local_gates
        export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-local-gates
    fi
    if [ "${GROUPS_RC:-0}" -ne 0 ]; then
        note "the tagged loader's hand-over in groups failed its tests (exit $GROUPS_RC): not timed"
        LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged_groups_4
    fi
    if [ "${TAGGED_TRAINING_RC:-0}" -ne 0 ]; then
        note "the tagged training forward failed its tests (exit $TAGGED_TRAINING_RC): not timed"
        LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_tagged_train
    fi
fi
if [ "${FIRST_WARP_RC:-0}" -ne 0 ]; then
    note "the grid barrier polled by the first warp alone failed its tests (exit $FIRST_WARP_RC): not timed"
    LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_first_warp,real_bwd_first_warp,real_gluon_first_warp,real_gluon_bwd_first_warp,real_gluon_train_first_warp
fi
if [ "${STREAMED_RC:-0}" -ne 0 ]; then
    note "the Gluon backward's streamed copies failed their tests (exit $STREAMED_RC): not timed"
    LEFT_OUT=${LEFT_OUT:+$LEFT_OUT,}real_gluon_bwd_streamed
fi
if [ "${OVERLAPPED_RC:-0}" -ne 0 ]; then
    note "the overlapped input projection failed its tests (exit $OVERLAPPED_RC): not measured"
    export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-overlapped
fi
if [ "${OVERLAPPED_GRADS_RC:-0}" -ne 0 ]; then
    note "the overlapped backward GEMMs failed their tests (exit $OVERLAPPED_GRADS_RC): not measured"
    export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-overlapped-grads
fi
# every inference switch at once, and every training switch at once: each only where all of its stages passed
# (or did not run)
if [ "$TAGGED_OK" = 0 ] || [ "${THREAD_POLL_RC:-0}" -ne 0 ] || [ "${LOCAL_GATES_RC:-0}" -ne 0 ] \
        || [ "${OVERLAPPED_RC:-0}" -ne 0 ]; then
    export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-inference-switches
fi
if [ "${OVERLAPPED_GRADS_RC:-0}" -ne 0 ] || [ "${OVERLAPPED_RC:-0}" -ne 0 ] || [ "${STREAMED_RC:-0}" -ne 0 ] \
        || [ "${TAGGED_TRAINING_RC:-0}" -ne 0 ] || [ "$TAGGED_OK" = 0 ]; then
    export RNNBENCH_WITHHOLD_BACKENDS=${RNNBENCH_WITHHOLD_BACKENDS:+$RNNBENCH_WITHHOLD_BACKENDS,}triton-train-switches
fi
[ -n "$LEFT_OUT" ] && ABLATION_ARGS="${ABLATION_ARGS:-} --leave-out $LEFT_OUT"
# their warp states under Nsight Compute too, beside the shipped Gluon forward's (the default cases
# only); the tagged exchange's first (the goal shape's candidate; the profile stage rarely finishes)
if [ -z "${PROFILES_SET:-}" ]; then
    [ "$TAGGED_OK" = 1 ] && PROFILES="triton-tagged:768:16:fwd $PROFILES"
    [ "$FUSED_OK" = 1 ] && PROFILES="$PROFILES triton-fused:768:16:fwd"
fi
if [ -n "$PRECOMPILE" ]; then
    wait $PRECOMPILE
    tail -n 3 "$DIR/precompile.log"
fi

if wants barrier; then
    stage barrier 40 "$PY" -m rnnbench.kernels.barrier_bench --out "$DIR/barrier.csv" > "$DIR/barrier.log" 2>&1
    tail -n 3 "$DIR/barrier.log"
fi

# what issue 8 is about first: the whole call of the goal's candidates against cuDNN (gpu-fused: every
# never-run inference switch at once first, the cost model's lowest estimate at the anchor), then the kernels
# alone (step ablation, the never-run ones included), then what calibrates the model
if wants fused && { [ "$FUSED_OK" = 1 ] || [ "$TAGGED_OK" = 1 ]; }; then
    # its warp-specialised kernels compile in parallel first (they launch too: after the tests passed)
    stage precompile-fused 40 "$PY" -m rnnbench precompile gpu-fused --device cuda --jobs 8 \
        > "$DIR/precompile-fused.log" 2>&1
    stage suite-fused 90 "$PY" -m rnnbench run gpu-fused --device cuda --out "$DIR/gpu-fused" --resume --no-progress \
        > "$DIR/gpu-fused.log" 2>&1
    tail -n 5 "$DIR/gpu-fused.log"
fi

if wants ablation; then
    ablation ablation . "$(pwd)/$DIR/step-ablation.csv"
fi

# then where the step's cycles go, stamped inside the kernel: what to change next in it
if wants trace && [ -f kernels/step_trace.py ]; then
    # the tagged forward where its tests passed, and its variants where theirs did (every variant at the
    # anchor first: a trace cut by its limit keeps those)
    TRACE_VARIANTS=real_gluon
    if [ "$TAGGED_OK" = 1 ]; then
        TRACE_VARIANTS=real_gluon_tagged,real_gluon
        [ "${THREAD_POLL_RC:-1}" -eq 0 ] && TRACE_VARIANTS=real_gluon_tagged,real_gluon_tagged_thread_poll,real_gluon
        [ "${LOCAL_GATES_RC:-1}" -eq 0 ] && TRACE_VARIANTS=$TRACE_VARIANTS,real_gluon_tagged_local_gates
        [ "${CHAINS_RC:-1}" -eq 0 ] && TRACE_VARIANTS=$TRACE_VARIANTS,real_gluon_tagged_two_chains
        [ "${GROUPS_RC:-1}" -eq 0 ] && TRACE_VARIANTS=$TRACE_VARIANTS,real_gluon_tagged_groups_4
    fi
    stage trace 90 "$PY" -m rnnbench.kernels.step_trace --out "$DIR/trace" --variants "$TRACE_VARIANTS" \
        > "$DIR/trace.log" 2>&1
    tail -n 5 "$DIR/trace.log"
fi

if wants latency && [ -f kernels/latency_probe.py ]; then
    stage latency 90 "$PY" -m rnnbench.kernels.latency_probe --out "$DIR/latency.csv" > "$DIR/latency.log" 2>&1
    tail -n 20 "$DIR/latency.log"
fi

if wants profile; then
    profile_cases
fi

if wants memory && [ -f harness/memory_breakdown.py ]; then
    for backend in triton torch; do
        stage memory-$backend 45 "$PY" -m rnnbench.harness.memory_breakdown --device cuda --backend $backend \
            --family lstm --hidden-size 64 768 --batch 16 64 --json "$DIR/memory-breakdown-$backend.json" \
            > "$DIR/memory-breakdown-$backend.log" 2>&1
    done
    if [ -f harness/gemm_memory.py ]; then
        stage gemm-memory 60 "$PY" -m rnnbench.harness.gemm_memory --csv "$DIR/gemm-memory.csv" > "$DIR/gemm-memory.log" 2>&1
        for formulation in $WEIGHT_GRADS; do
            stage memory-triton-$formulation 30 "$PY" -m rnnbench.harness.memory_breakdown --device cuda --backend triton \
                --family lstm --hidden-size 64 768 --batch 16 64 --mode fwd_bwd --weight-grad $formulation \
                --json "$DIR/memory-breakdown-triton-$formulation.json" > "$DIR/memory-breakdown-triton-$formulation.log" 2>&1
        done
    fi
    if [ "$FUSED_OK" = 1 ]; then
        stage memory-triton-fused 30 "$PY" -m rnnbench.harness.memory_breakdown --device cuda --backend triton \
            --family lstm --hidden-size 512 768 --batch 16 64 --fused-input \
            --json "$DIR/memory-breakdown-triton-fused.json" > "$DIR/memory-breakdown-triton-fused.log" 2>&1
    fi
fi

LEFT=$(( BUDGET - $(elapsed) - 30 ))
if ! wants suite; then
    :
elif [ "$LEFT" -gt 30 ]; then
    stage suite "$LEFT" "$PY" -m rnnbench run "$SUITE" --device cuda --out "$DIR/$SUITE" --resume --no-progress \
        > "$DIR/$SUITE.log" 2>&1
    tail -n 5 "$DIR/$SUITE.log"
else
    note "no time left for the suite ($LEFT s)"
fi
note "done"
