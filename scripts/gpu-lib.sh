# Shell helpers shared by the GPU scripts (sourced, not run): a session log with elapsed seconds,
# stages with their own time limits, the machine description, and packing results for the device
# tool. The sourcing script sets DIR (the results folder), LOG and START before calling them.

# wants STAGE: whether STAGE is one of the words of $STAGES
wants() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }

elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "[$(elapsed) s] $*" | tee -a "$LOG"; }

# stage NAME LIMIT_S COMMAND...: run COMMAND with a limit (SIGINT, then KILL 20 s later), log its
# exit status and seconds, and return the status (124 or 137: it ran past the limit). Where BUDGET
# is set, the limit is at most what is left of it (30 s kept for packing the results), and with
# less than 10 s left the stage is skipped (status 124): stages that all ran to their limits would
# otherwise outlast the device tool's 10 minutes a call, which kills the call before it packs
stage() {
    local name=$1 limit=$2; shift 2
    if [ -n "${BUDGET:-}" ]; then
        local left=$(( BUDGET - $(elapsed) - 30 ))
        if [ "$left" -lt 10 ]; then
            note "no time left for $name (${left} s of the budget)"
            return 124
        fi
        [ "$limit" -gt "$left" ] && limit=$left
    fi
    local t0; t0=$(date +%s)
    note "start $name (limit ${limit} s): $*"
    timeout -s INT -k 20 "$limit" "$@"
    local rc=$?
    note "end $name: exit $rc after $(( $(date +%s) - t0 )) s"
    return $rc
}

# earlier_status NAME: the exit status of stage NAME in the session log ($LOG) as an earlier call left
# it (its last "end NAME: exit N"; 124 where its last word is "no time left for NAME"), or nothing
# where no call started it
earlier_status() {
    [ -f "$LOG" ] || return 0
    awk -v name="$1" '
        index($0, "] end " name ": exit ") { split(substr($0, index($0, ": exit ") + 7), word, " "); status = word[1] }
        index($0, "] no time left for " name " (") { status = 124 }
        END { if (status != "") print status }' "$LOG"
}

# ablation NAME TREE CSV: the step-ablation benchmark (rnnbench.kernels.step_bench) of the checkout
# at TREE, where it has one, as stage NAME with ABLATION_S seconds; rows in CSV (an absolute path),
# its output beside it (.log)
ablation() {
    local name=$1 tree=$2 csv=$3
    [ -f "$tree/kernels/step_bench.py" ] || { note "$name: no step_bench in $tree"; return 0; }
    # ABLATION_ARGS: more options of step_bench (e.g. --shapes lstm:768:16,lstm:256:64)
    stage "$name" "$ABLATION_S" env -C "$tree" PYTHONPATH=. "$PY" -m rnnbench.kernels.step_bench --out "$csv" \
        ${ABLATION_ARGS:-} > "${csv%.csv}.log" 2>&1
    tail -n 3 "${csv%.csv}.log"
}

# profile_cases: each of $PROFILES (BACKEND:H:B:MODE[:KERNEL_REGEX[:DTYPE]], LSTM T=1024, DTYPE
# default bfloat16) under Nsight Compute, the first launch in one call of a kernel whose name matches
# KERNEL_REGEX (default: the LSTM forward kernels; rnnbench.harness.profile_target, after a warm-up
# call outside the range):
# launch statistics, occupancy, speed of light, warp states and warp-state samples per SASS
# instruction (SourceCounters), as DIR/profile-NAME.ncu-rep (open it in Nsight Compute) and its
# source page (per-instruction samples beside the SASS) and details page as CSV
profile_cases() {
    local ncu=${NCU:-$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)}
    [ -n "$ncu" ] || { note "profile: no ncu found (set NCU)"; return 0; }
    local case backend hidden batch mode kernels dtype name limit
    for case in $PROFILES; do
        IFS=: read -r backend hidden batch mode kernels dtype <<< "$case"
        name=$backend-h$hidden-b$batch-$mode${dtype:+-$dtype}
        # each case gets PROFILE_S seconds, or what is left of BUDGET (30 s kept for packing)
        limit=$(( BUDGET - $(elapsed) - 30 ))
        [ "$limit" -gt "${PROFILE_S:-90}" ] && limit=${PROFILE_S:-90}
        [ "$limit" -ge 20 ] || { note "profile: no time left for $name"; continue; }
        stage "profile-$name" "$limit" "$ncu" --profile-from-start off --target-processes all \
            --kernel-name "regex:${kernels:-lstm_forward.*kernel}" --launch-count 1 \
            --section LaunchStats --section Occupancy --section SpeedOfLight --section WarpStateStats \
            --section SourceCounters --import-source no -f -o "$DIR/profile-$name" \
            "$PY" -m rnnbench.harness.profile_target --backend "$backend" --hidden-size "$hidden" --batch "$batch" \
            --mode "$mode" --dtype "${dtype:-bfloat16}" > "$DIR/profile-$name.log" 2>&1
        tail -n 3 "$DIR/profile-$name.log"
        if [ -f "$DIR/profile-$name.ncu-rep" ]; then
            "$ncu" -i "$DIR/profile-$name.ncu-rep" --page source --csv --print-source sass \
                > "$DIR/profile-$name-sass.csv" 2>> "$DIR/profile-$name.log"
            "$ncu" -i "$DIR/profile-$name.ncu-rep" --page details --csv \
                > "$DIR/profile-$name-details.csv" 2>> "$DIR/profile-$name.log"
        fi
    done
}

# describe_machine FILE: nvidia-smi, Python/torch/CUDA/cuDNN/Triton versions, SMs, CPUs, commit
describe_machine() {
    {
        date -u +%Y-%m-%dT%H:%M:%SZ
        nvidia-smi 2>&1
        "$PY" -c 'import sys, torch, triton; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version()); print("triton", triton.__version__); p = torch.cuda.get_device_properties(0); print(p.name, p.multi_processor_count, "SMs", p.total_memory // 2**20, "MiB")' 2>&1
        echo "cpus $(nproc)"
        git rev-parse HEAD 2>/dev/null
    } > "$1"
    note "machine: $(grep -m1 -E 'H100|H200|A100|NVIDIA' "$1" | head -c 200)"
}

# pack NAME: DIR into $OUT/NAME.tgz where $OUT is set (the device tool brings $OUT back)
pack() {
    [ -n "${OUT:-}" ] && tar czf "$OUT/$1.tgz" "$DIR" && note "packed $DIR into \$OUT/$1.tgz"
}

# xdist_flag [WORKERS]: "-n WORKERS" (default 8) where pytest-xdist is installed
xdist_flag() { "$PY" -c 'import xdist' 2>/dev/null && echo "-n ${1:-8}"; }
