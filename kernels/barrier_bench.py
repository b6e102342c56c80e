"""Grid-barrier micro-benchmark: microseconds per grid synchronisation against the number of programs.

A tiny kernel runs ``N`` grid barriers back to back with the primitive the cooperative path uses
(:func:`rnnbench.kernels.primitives.grid_barrier`: CTA barrier, release add on the program's own
flag, acquire poll of every program's flag, CTA barrier), launched cooperatively with
``num_stages=1`` as the recurrent kernels are. The time per barrier is the slope between ``N`` and
``2N`` barriers, so the launch and the first barrier's wait for all programs to start cancel out;
each point is the median of CUDA-event timings after a warm-up. Program 0 writes the sum of the
flags at the end, which must be ``programs x N``, and the status word, which must be 0.

    PYTHONPATH=. python3 -m rnnbench.kernels.barrier_bench --out reports/h100/barrier.csv

Both poll orders of :func:`rnnbench.kernels.primitives.barrier_wait` are timed (``--orders``):
``acquire`` (every poll load an acquire, what the kernels use) and ``relaxed`` (relaxed poll loads
in flight together, one acquire fence after them), and both sets of pollers (``--pollers``): every
warp of each program (``all``, what the kernels ship) or its first warp alone (``first``,
:data:`rnnbench.kernels.switches.GRID_POLL_FIRST_WARP`). Before a point is timed, a launch of each
count checks the barrier itself: after every barrier each program reads every flag, and one below
the barrier's count (a program let through before every program arrived) raises RuntimeError.
CSV columns: ``device_name, poll_order, pollers, programs, num_warps, barriers, us_per_barrier,
q25_us, q75_us`` (quartiles of the per-repeat slopes). The cost model charges a barrier its in-warp path (fence,
release add, one poll round trip, CTA barriers) plus ``barrier_arrival`` cycles per program
(:mod:`rnnbench.kernels.cost`); this measures both at once.

``run_barriers(..., missing=k)`` makes every barrier wait for ``k`` programs that do not exist: the
barrier times out, the kernel finishes, and :class:`rnnbench.kernels.launch.BarrierTimeout` is
raised (the GPU test of the timeout).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys

import torch
import triton
import triton.language as tl

from rnnbench.kernels.launch import BarrierTimeout, barrier_status_message, reset_sync
from rnnbench.kernels.plan import next_power_of_two
from rnnbench.kernels.primitives import BARRIER_TIMEOUT_NS, FLAG_SLOTS, POLL_ORDERS, SYNC_ROW, grid_barrier

PROGRAMS = (1, 2, 4, 8, 16, 32, 64, 96, 128, 132, 264)
WARPS = (4, 8)
#: who polls (``--pollers``): every warp, or the first warp of each program alone
POLLERS = {"all": False, "first": True}
COLUMNS = ["device_name", "poll_order", "pollers", "programs", "num_warps", "barriers", "us_per_barrier", "q25_us",
           "q75_us"]


@triton.jit(do_not_specialize=["N", "MISSING", "timeout_ns"])
def barrier_loop_kernel(flags_ptr, out_ptr, N, MISSING, timeout_ns, POLL: tl.constexpr, ORDER: tl.constexpr,
                        FIRST_WARP: tl.constexpr, CHECK: tl.constexpr):
    """``N`` grid barriers among all programs, each expecting ``MISSING`` programs more than the
    grid has, polled in ``ORDER`` (:data:`~rnnbench.kernels.primitives.POLL_ORDERS`), by each
    program's first warp alone where ``FIRST_WARP``; program 0 then stores the sum of the flags and
    the status word into ``out[0:2]``. ``CHECK``: after each barrier every warp reads every
    program's flag, and each program adds the flags it found below the barrier's count into
    ``out[2]`` (0 unless a program left a barrier early)."""
    index = tl.arange(0, POLL)
    early = 0
    for i in range(N):
        # scalar loads of 32 flags at a time (VECTOR 1), the poll the benchmark has always timed
        grid_barrier(flags_ptr, tl.program_id(0), tl.num_programs(0) + MISSING, i + 1, timeout_ns, POLL, ORDER, 1,
                     FIRST_WARP)
        if CHECK:
            seen = tl.load(flags_ptr + index, mask=index < tl.num_programs(0), other=i + 1, volatile=True)
            early += tl.sum((seen < i + 1).to(tl.int32))
    if CHECK:
        tl.atomic_add(out_ptr + 2, early)
    if tl.program_id(0) == 0:
        flags = tl.load(flags_ptr + index, mask=index < tl.num_programs(0), other=0, volatile=True)
        tl.store(out_ptr, tl.sum(flags))
        tl.store(out_ptr + 1, tl.load(flags_ptr + FLAG_SLOTS, volatile=True))


def poll_order(name: str) -> int:
    """The ``ORDER`` constexpr of a poll order's name (``"acquire"`` or ``"relaxed"``)."""
    if name not in POLL_ORDERS:
        raise ValueError(f"poll order must be one of {tuple(POLL_ORDERS)}, got {name!r}")
    return POLL_ORDERS[name]


def first_warp(pollers: str) -> bool:
    """The ``FIRST_WARP`` constexpr of who polls (``"all"`` or ``"first"``)."""
    if pollers not in POLLERS:
        raise ValueError(f"pollers must be one of {tuple(POLLERS)}, got {pollers!r}")
    return POLLERS[pollers]


def _launch(programs: int, barriers: int, num_warps: int, missing: int, timeout_ns: int, order: str,
            pollers: str = "all", check: bool = False) -> torch.Tensor:
    flags = reset_sync(torch.empty(int(SYNC_ROW.value), dtype=torch.int32, device="cuda"), programs + missing)
    out = torch.tensor([-1, -1, 0], dtype=torch.int32, device="cuda")
    barrier_loop_kernel[(programs,)](flags, out, barriers, missing, timeout_ns, POLL=next_power_of_two(programs + missing),
                                     ORDER=poll_order(order), FIRST_WARP=first_warp(pollers), CHECK=check,
                                     num_warps=num_warps, num_stages=1, launch_cooperative_grid=True)
    return out


def run_barriers(programs: int, barriers: int, num_warps: int = 8, missing: int = 0,
                 timeout_ns: int = int(BARRIER_TIMEOUT_NS.value), order: str = "acquire", pollers: str = "all") -> int:
    """Launch the benchmark kernel once, checking every barrier; returns the sum of the flags
    (``programs x barriers``), or raises :class:`~rnnbench.kernels.launch.BarrierTimeout` when a
    barrier timed out and RuntimeError when a program left a barrier before every program had
    arrived."""
    poll_order(order)
    first_warp(pollers)
    if programs < 1 or barriers < 0 or missing < 0:
        raise ValueError(f"programs must be >= 1 and barriers, missing >= 0, got programs={programs}, "
                         f"barriers={barriers}, missing={missing}")
    if programs + missing > FLAG_SLOTS.value:
        raise ValueError(f"programs + missing must be at most {FLAG_SLOTS.value} (one flag each), got {programs + missing}")
    total, status, early = _launch(programs, barriers, num_warps, missing, timeout_ns, order, pollers, True).tolist()
    message = barrier_status_message(torch.tensor([status]), f"barrier_loop_kernel ({programs} programs)", timeout_ns)
    if message is not None:
        raise BarrierTimeout(message)
    if early:
        raise RuntimeError(f"{early} flags were below their barrier's count when read after it ({programs} programs, "
                           f"{num_warps} warps, {order} poll, {pollers} polling): a program left a barrier early")
    return total


def slope_us(launch, count: int, repeats: int) -> tuple[float, float, float]:
    """``(median, q25, q75)`` microseconds per unit of ``count``: the slope of CUDA-event times
    between ``launch(count)`` and ``launch(2 * count)``, over ``repeats`` pairs after one warm-up pair
    (what a launch costs besides its units, and the first unit's wait, cancel)."""
    for units in (count, 2 * count):
        launch(units)
    torch.cuda.synchronize()
    slopes = []
    for _ in range(repeats):
        times = []
        for units in (count, 2 * count):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            launch(units)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        slopes.append((times[1] - times[0]) * 1000.0 / count)
    q25, median, q75 = statistics.quantiles(slopes, n=4)
    return median, q25, q75


def time_barrier(programs: int, barriers: int = 1000, num_warps: int = 8, repeats: int = 15,
                 order: str = "acquire", pollers: str = "all") -> tuple[float, float, float]:
    """``(median, q25, q75)`` microseconds per barrier for ``programs`` programs polling in ``order``,
    by ``pollers`` (see the module docstring)."""
    for count in (barriers, 2 * barriers):
        final = run_barriers(programs, count, num_warps, order=order, pollers=pollers)
        if final != programs * count:
            raise RuntimeError(f"barrier flags summed to {final}, expected {programs} programs x {count} barriers")
    return slope_us(lambda count: _launch(programs, count, num_warps, 0, int(BARRIER_TIMEOUT_NS.value), order, pollers),
                    barriers, repeats)


def barrier_sass(variant: tuple, arch: int) -> str:
    """SASS of the benchmark kernel of ``variant = (num_warps, poll order[, pollers])`` compiled for
    ``sm_<arch>`` as it is launched, unchecked (no GPU needed)."""
    num_warps, order, pollers = (*variant, "all")[:3]
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rnnbench.kernels.sass import disassemble

    source = ASTSource(fn=barrier_loop_kernel, signature={"flags_ptr": "*i32", "out_ptr": "*i32", "N": "i32", "MISSING": "i32",
                                                          "timeout_ns": "i32", "POLL": "constexpr", "ORDER": "constexpr",
                                                          "FIRST_WARP": "constexpr", "CHECK": "constexpr"},
                       constexprs={"POLL": 128, "ORDER": poll_order(order), "FIRST_WARP": first_warp(pollers),
                                   "CHECK": False},
                       attrs={(0,): [["tt.divisibility", 16]], (1,): [["tt.divisibility", 16]]})
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": num_warps, "num_stages": 1, "launch_cooperative_grid": True})
    return disassemble(compiled.asm["cubin"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.kernels.barrier_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--programs", default=",".join(map(str, PROGRAMS)), help="comma-separated program counts")
    parser.add_argument("--warps", default=",".join(map(str, WARPS)), help="comma-separated warps per program")
    parser.add_argument("--barriers", type=int, default=1000, help="barriers per launch (N; the slope uses N and 2N)")
    parser.add_argument("--orders", default=",".join(POLL_ORDERS), help="comma-separated poll orders (acquire, relaxed)")
    parser.add_argument("--pollers", default=",".join(POLLERS),
                        help="comma-separated: every warp polls (all), the first warp alone (first)")
    args = parser.parse_args(argv)
    orders = [order.strip() for order in args.orders.split(",") if order.strip()]
    pollers_list = [pollers.strip() for pollers in args.pollers.split(",") if pollers.strip()]
    try:
        for order in orders:
            poll_order(order)
        for pollers in pollers_list:
            first_warp(pollers)
    except ValueError as error:
        parser.error(str(error))
    if not torch.cuda.is_available():
        print("barrier_bench: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name()
    written = 0
    with open(args.out, "w", newline="") as handle:  # row by row: a run cut short keeps what it measured
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for num_warps in (int(w) for w in args.warps.split(",")):
            for programs in (int(p) for p in args.programs.split(",")):
                # the orders and pollers of one point back to back, so drift falls on all of them
                for order, pollers in ((order, pollers) for order in orders for pollers in pollers_list):
                    try:
                        median, q25, q75 = time_barrier(programs, args.barriers, num_warps, order=order, pollers=pollers)
                    except Exception as error:  # e.g. a grid too large to be co-resident: the driver refuses it
                        print(f"programs={programs} num_warps={num_warps} order={order} pollers={pollers}: "
                              f"{type(error).__name__}: {error}", file=sys.stderr)
                        continue
                    writer.writerow({"device_name": device, "poll_order": order, "pollers": pollers,
                                     "programs": programs, "num_warps": num_warps, "barriers": args.barriers,
                                     "us_per_barrier": round(median, 4), "q25_us": round(q25, 4), "q75_us": round(q75, 4)})
                    handle.flush()
                    written += 1
                    print(f"{programs:4d} programs x {num_warps} warps, {order} poll, {pollers} polling: "
                          f"{median:.3f} us per barrier")
    print(f"wrote {written} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
