"""The Gluon LSTM kernels (``path="gluon"``: :mod:`rnnbench.kernels.gluon_lstm`, the forward, and
:mod:`rnnbench.kernels.gluon_lstm_backward`) compile ahead of time for sm_90 with the installed
Triton, fit (no spills, shared memory within the per-block limit and within the planner's model),
and really use what they were written for: TMA loads completing on mbarriers, warpgroup MMAs and
``cp.async`` for xg (forward), Ampere MMAs from ``ldmatrix`` (backward), the proxy fence and the
grid barrier's poll.

The committed tables ``reports/aot/gluon-sm_90-triton{3.6,3.9}.csv`` (``make gluon-sm90`` with each
Triton) cover every configuration :func:`rnnbench.kernels.aot.gluon_configs` plans and must all fit.
Gluon cannot run in the interpreter; whether the kernels are *right* is checked on a GPU only
(``tests/test_kernels_gpu.py``).
"""

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import triton

from rnnbench.kernels.aot import SHARED_MEMORY_LIMIT, KernelConfig, compile_all, compile_ptx, gluon_configs
from rnnbench.kernels.plan import DEFAULT_POLL_ORDER, gluon_available, gluon_state_copies
from rnnbench.kernels.switches import GLUON_TAGGED_LOADERS

pytestmark = pytest.mark.skipif(not gluon_available(), reason="this Triton has no Gluon Hopper API "
                                "(triton.experimental.gluon.language.nvidia.hopper)")

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FIELDS = [field.name for field in dataclasses.fields(KernelConfig)]
#: the barrier poll's PTX in each order (plan.poll_order), and in the one every plan has by default
ORDER_PTX = {"acquire": ("ld.global.acquire.gpu",), "relaxed": ("ld.global.relaxed.gpu", "fence.acq_rel.gpu")}
POLL_PTX = ORDER_PTX[DEFAULT_POLL_ORDER]
#: the PTX both kernels must contain: what their design rests on
COMMON_FEATURES = {
    "mbarrier armed with a byte count": "mbarrier.arrive.expect_tx",
    "mbarrier wait": "mbarrier.try_wait",
    "TMA copies of the exchange (3-D boxes)": "cp.async.bulk.tensor.3d",
    "generic-to-async proxy fence": "fence.proxy.async.global",
    **{f"poll of the release flags ({ptx})": ptx for ptx in POLL_PTX},
    "release arrival": ".release.",
    "barrier timeout clock": "%globaltimer",
}
#: and each kernel's own
FEATURES = {
    "fwd": {**COMMON_FEATURES, "TMA load of the weight slice (2-D boxes)": "cp.async.bulk.tensor.2d",
            "warpgroup MMA": "wgmma.mma_async", "cp.async of xg": "cp.async.commit_group"},
    "bwd": {**COMMON_FEATURES, "Ampere MMA": "mma.sync.aligned.m16n8k16", "operands by ldmatrix": "ldmatrix"},
}


def _pick(h_pad: int, block_b: int, direction: str, directions: int, dtype: str = "bfloat16",
          input_tiles: int = 0) -> KernelConfig:
    matches = [c for c in gluon_configs() if (c.h_pad, c.block_b, c.direction, c.directions, c.dtype, c.input_tiles)
               == (h_pad, block_b, direction, directions, dtype, input_tiles)]
    assert len(matches) == 1, matches
    return matches[0]


def test_gluon_configurations_cover_the_goal_shapes():
    configs = pd.DataFrame([dataclasses.asdict(c) for c in gluon_configs()])
    assert set(configs.path) == {"gluon"}
    assert set(zip(configs.kernel, configs.direction)) == {("lstm_forward_gluon_kernel", "fwd"), (
        "lstm_forward_gluon_kernel", "fwd_train"), ("lstm_backward_gluon_kernel", "bwd")}
    assert set(configs.h_pad) == {256, 512, 768, 1024} and set(configs.dtype) == {"bfloat16", "float16"}
    assert set(zip(configs.directions, configs.lengths)) == {(1, False), (2, True)}
    # the smallest batch block whose grid is co-resident on 132 SMs at one program per SM
    # (plan_gluon): 16 rows up to H=512 (B=64: 64 programs; both directions of H=256: 128), 32 for
    # both directions of H=512, B=64 (128 programs; 16-row blocks would put 256 two by two) and from
    # H=768 (B=64: 96 and 128 programs), and 64 for both directions of H=768, B=64 in one launch
    # (since the state's copies hold 4 tiles, one program of 64 rows fits an SM); the backward takes
    # 32-row blocks for both directions of H=512, B=64 together
    forward, backward = configs[configs.direction != "bwd"], configs[configs.direction == "bwd"]
    narrow = forward[forward.h_pad <= 512]
    assert set(narrow.block_b) == {16, 32}
    assert set(zip(narrow[narrow.block_b == 32].h_pad, narrow[narrow.block_b == 32].directions)) == {(512, 2)}
    assert set(forward[forward.h_pad >= 768].block_b) == {16, 32, 64}
    assert set(forward[forward.block_b == 64].h_pad) == {768} and forward[forward.block_b == 64].directions.eq(2).all()
    assert set(backward.block_b) == {16, 32} and set(backward.num_warps) == {8}
    # the fused input projection (input size = H): every forward of 16-row blocks without lengths
    # up to H=768, whose W_ih slice and input tiles fit beside the rest; at H=1024 they do not
    fused = configs[configs.input_tiles > 0]
    assert set(fused.h_pad) == {256, 512, 768} and (fused.input_tiles == fused.h_pad // 64).all()
    assert set(fused.block_b) == {16} and not fused.lengths.any() and set(fused.direction) == {"fwd", "fwd_train"}
    assert (backward.input_tiles == 0).all()


@pytest.mark.parametrize("version", ["3.6", "3.9"])
def test_committed_table_covers_every_configuration_and_fits(version):
    table = pd.read_csv(ROOT / "reports" / "aot" / f"gluon-sm_90-triton{version}.csv")
    shipped = pd.DataFrame([dataclasses.asdict(c) for c in gluon_configs()])
    keys = table[CONFIG_FIELDS].astype(str).apply(tuple, axis=1)
    assert set(keys) == set(shipped[CONFIG_FIELDS].astype(str).apply(tuple, axis=1)), \
        f"reports/aot/gluon-sm_90-triton{version}.csv is stale: regenerate it (make gluon-sm90 with Triton {version})"
    assert table.fits.all() and (table.spill_bytes == 0).all(), table[~table.fits].to_string()
    assert (table.shared_bytes <= SHARED_MEMORY_LIMIT[90]).all()


def test_sample_compiles_without_spills_and_uses_tma_mbarriers_and_its_mmas():
    """The smallest and the largest layout, the bidirectional training variant with lengths of one,
    and the backward's layouts (all copies in flight; a ring of 2) with lengths; with Triton 3.6 or
    3.9 also to the resources in that version's committed table (a kernel change fails here until
    the tables are regenerated). Forwards that run the grid barrier: the smallest layout with
    lengths (one direction without them takes the tagged exchange up to H=768, whose loader's PTX
    the tagged tests below check)."""
    sample = [_pick(256, 16, "fwd", 2), _pick(768, 64, "fwd_train", 2), _pick(1024, 32, "fwd", 1, "float16"),
              _pick(768, 16, "bwd", 1), _pick(1024, 32, "bwd", 2, "float16")]
    results = compile_all(90, sample, job=compile_ptx)
    table = ROOT / "reports" / "aot" / f"gluon-sm_90-triton{'.'.join(triton.__version__.split('.')[:2])}.csv"
    committed = pd.read_csv(table).astype({name: str for name in CONFIG_FIELDS}) if table.exists() else None
    for config, (resources, ptx) in zip(sample, results):
        if committed is not None:
            row = committed[(committed[CONFIG_FIELDS] == pd.Series(dataclasses.asdict(config)).astype(str)).all(axis=1)]
            assert len(row) == 1 and (int(row.shared_bytes.iloc[0]), int(row.registers.iloc[0])) == (
                resources.shared_bytes, resources.registers), f"{table.name} is stale for {config} (make gluon-sm90)"
        assert resources.spill_bytes == 0, resources
        assert resources.shared_bytes <= SHARED_MEMORY_LIMIT[90], resources
        assert resources.fits, resources  # also: the planner's model is not below what was compiled
        features = FEATURES[config.direction[:3]]
        if config.register_tiles == config.k_chunks:  # every weight tile in registers: no TMA of weights
            features = {what: needle for what, needle in features.items() if "weight slice" not in what}
        missing = [what for what, needle in features.items() if needle not in ptx]
        assert not missing, f"{config}: the PTX lacks {missing}"
        if config.direction == "bwd":
            # weights and gate gradients in copies of 8 tiles: each once before the time loop, the
            # gradients once per stage and refill in it; no warpgroup MMA (M would be 64 units)
            copies = 4 * config.h_pad // 64 // 8
            assert ptx.count("cp.async.bulk.tensor.3d") == 2 * copies and "wgmma" not in ptx, config
            continue
        # the weight tiles in shared memory are loaded once, before the time loop: 4 boxes per 64
        # columns; the state inside it in 3-D copies of up to 4 tiles of 64 columns; the tiles held
        # in registers are the MMAs' A operand as registers (4 per thread: {%r, %r, %r, %r})
        assert ptx.count("cp.async.bulk.tensor.2d") == 4 * (config.k_chunks - config.register_tiles), config
        assert ptx.count("cp.async.bulk.tensor.3d") == gluon_state_copies(config.h_pad)[0], config
        mmas = [line for line in ptx.splitlines() if "wgmma.mma_async" in line]
        from_registers = [line for line in mmas if re.search(r"\}, \{%r\d+,%r\d+,%r\d+,%r\d+\}, ", line)]
        assert (len(mmas), len(from_registers)) == (4 * config.k_chunks, 4 * config.register_tiles), config


#: the PTX of the forward with its input projection fused, beyond the forward's own
FUSED_FEATURES = {"a warpgroup of its own (warp specialisation)": "setmaxnreg",
                  "handoff of the products (an mbarrier arrival without a byte count)": "mbarrier.arrive.shared"}


def test_the_fused_input_projection_compiles_into_its_own_warpgroup():
    """The forward with its input projection fused (:func:`rnnbench.kernels.plan.gluon_input_tiles`,
    H=768: 12 input tiles, and H=256 training in fp16): no spill, within shared memory and the
    planner's model, as many resources as the committed table says; a second warpgroup
    (``setmaxnreg``) that loads W_ih once (4 boxes per tile) and x by 3-D TMA copies every step and
    runs 4 MMAs per input tile, handing its products over by mbarrier; no ``cp.async`` of xg any
    more; the recurrence's MMAs, state copies and poll as without it."""
    sample = [_pick(768, 16, "fwd", 1, input_tiles=12), _pick(256, 16, "fwd_train", 1, "float16", input_tiles=4)]
    table = ROOT / "reports" / "aot" / f"gluon-sm_90-triton{'.'.join(triton.__version__.split('.')[:2])}.csv"
    committed = pd.read_csv(table).astype({name: str for name in CONFIG_FIELDS}) if table.exists() else None
    for config, (resources, ptx) in zip(sample, compile_all(90, sample, job=compile_ptx)):
        if committed is not None:
            row = committed[(committed[CONFIG_FIELDS] == pd.Series(dataclasses.asdict(config)).astype(str)).all(axis=1)]
            assert len(row) == 1 and (int(row.shared_bytes.iloc[0]), int(row.registers.iloc[0])) == (
                resources.shared_bytes, resources.registers), f"{table.name} is stale for {config} (make gluon-sm90)"
        assert resources.spill_bytes == 0 and resources.fits, resources
        assert resources.shared_bytes <= SHARED_MEMORY_LIMIT[90], resources
        features = {**FEATURES["fwd"], **FUSED_FEATURES}
        features.pop("cp.async of xg")
        missing = [what for what, needle in features.items() if needle not in ptx]
        assert not missing, f"{config}: the PTX lacks {missing}"
        assert "cp.async.commit_group" not in ptx, config
        copies = gluon_state_copies(config.h_pad)[0] + gluon_state_copies(config.input_tiles * 64)[0]
        # the 3-D copies: the state's in the time loop; the input's once before the producer's loop and once in it
        assert ptx.count("cp.async.bulk.tensor.3d") == copies + gluon_state_copies(config.input_tiles * 64)[0], config
        weight_tiles = config.k_chunks - config.register_tiles + config.input_tiles  # W_hh's in shared memory, W_ih's
        assert ptx.count("cp.async.bulk.tensor.2d") == 4 * weight_tiles, config
        mmas = ptx.count("wgmma.mma_async")
        assert mmas == 4 * config.k_chunks + 4 * config.input_tiles, (config, mmas)


def test_a_grid_of_more_than_64_hidden_blocks_compiles():
    """H=1040 (65 hidden blocks, above the table's sizes): the poll of 128 flags, a power of two
    (the plain kernels' rounding to a multiple of 32 gave 96, which ``gl.arange`` refuses)."""
    from rnnbench.kernels.plan import plan_gluon

    plan = plan_gluon("lstm", 1040, 16, torch.bfloat16, 132)
    assert (plan.grid[0], plan.poll) == (65, 128)
    (resources, ptx), = compile_all(90, [KernelConfig.from_plan(plan, "bfloat16", "fwd")], job=compile_ptx)
    assert resources.fits and resources.spill_bytes == 0, resources
    assert all(poll in ptx for poll in POLL_PTX)


def test_a_plan_with_the_other_poll_order_compiles_that_order(monkeypatch):
    """The poll order is the plan's (a constexpr of the launch): forcing the order the default is not
    compiles the other poll, and the default's loads are gone (the grid barrier's poll: the tagged
    exchange off in the compiling processes, ``RNNBENCH_TAGGED_EXCHANGE``)."""
    monkeypatch.setenv("RNNBENCH_TAGGED_EXCHANGE", "off")
    other = next(order for order in ORDER_PTX if order != DEFAULT_POLL_ORDER)
    config = dataclasses.replace(_pick(768, 16, "fwd", 1), poll_order=other)
    (resources, ptx), = compile_all(90, [config], job=compile_ptx)
    assert resources.fits and resources.spill_bytes == 0, resources
    assert all(needle in ptx for needle in ORDER_PTX[other]), ORDER_PTX[other]
    assert ORDER_PTX[DEFAULT_POLL_ORDER][0] not in ptx


def test_plans_of_the_table_are_the_planners():
    from rnnbench.kernels.plan import plan_gluon

    config = _pick(768, 16, "fwd", 1)
    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    assert (plan.block_b, plan.h_pad, plan.k_chunks, plan.num_warps, plan.poll) == (
        config.block_b, config.h_pad, config.k_chunks, config.num_warps, config.poll)


def _gluon_ptx(variant: tuple[str, bool], arch: int) -> str:
    """PTX of the Gluon ``direction`` (``fwd``/``bwd``) kernel at H=768 B=16 with ``GRID_SYNC=grid_sync``
    (``variant``; a job for ``compile_all``, whose workers compile without the interpreter)."""
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.gluon_lstm_backward import compile_backward
    from rnnbench.kernels.plan import plan_gluon

    direction, grid_sync = variant
    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132, backward=direction == "bwd")
    if direction == "bwd":
        compiled = compile_backward(plan, torch.bfloat16, has_lengths=False, arch=arch, grid_sync=grid_sync)
    else:
        compiled = compile_forward(plan, torch.bfloat16, training=False, has_lengths=False, arch=arch,
                                   grid_sync=grid_sync)
    return compiled.asm["ptx"]


def test_the_step_ablations_unsynchronised_gluon_kernels_have_no_grid_barrier(monkeypatch):
    """``real_gluon_no_sync`` and ``real_gluon_bwd_no_sync`` (``GRID_SYNC=False``, the step ablation
    only) keep the step's TMA copies, MMAs and proxy fences and lose the release and the poll; the
    barrier kernels (``real_gluon``, ``real_gluon_bwd``: the tagged exchange off in the compiling
    processes, as the ablation runs them) have both."""
    monkeypatch.setenv("RNNBENCH_TAGGED_EXCHANGE", "off")
    barrier = (*POLL_PTX, ".release.", "%globaltimer")
    variants = [(direction, grid_sync) for direction in ("fwd", "bwd") for grid_sync in (True, False)]
    for (direction, grid_sync), ptx in zip(variants, compile_all(90, variants, job=_gluon_ptx)):
        step = [needle for needle in FEATURES[direction].values() if needle not in COMMON_FEATURES.values()]
        assert all(needle in ptx for needle in (*step, "cp.async.bulk.tensor.3d", "fence.proxy.async.global")), direction
        assert [needle in ptx for needle in barrier] == [grid_sync] * len(barrier), (direction, grid_sync, barrier)


def _tagged_ptx(training: bool, arch: int) -> tuple:
    """``(registers, spill bytes, PTX)`` of the Gluon forward at H=768 B=16 with the tagged exchange
    switched on (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange

    with tagged_exchange(True):
        compiled = compile_forward(plan_gluon("lstm", 768, 16, torch.bfloat16, 132), torch.bfloat16, training=training,
                                   has_lengths=False, arch=arch)
    return (*cubin_resources(compiled.asm["cubin"]), compiled.asm["ptx"])


def test_the_tagged_exchange_compiles_into_one_warp_loaders_without_grid_barrier():
    """With :func:`rnnbench.kernels.switches.tagged_exchange` on, the forward (inference and training)
    publishes its state as compact words (a relaxed 32-bit store per pair of values) and four one-warp
    loader partitions (``setmaxnreg``) load them in int32 pairs with vector volatile loads, poll the
    stale ones under a timeout and store them into the MMAs' shared memory behind an async-proxy
    fence, announcing them on an mbarrier:
    no TMA copy of the state, no release, no poll of flags; the weights' TMA loads, the MMAs and
    the ``cp.async`` of xg stay. No spill under this Triton (Triton 3.6 spills 24 bytes in the
    training forward at this shape, one local access on the recurrence's step, KERNELS2.md)."""
    for training, (registers, spills, ptx) in zip((False, True), compile_all(90, [False, True], job=_tagged_ptx)):
        if not training or tuple(int(part) for part in triton.__version__.split(".")[:2]) > (3, 6):
            assert spills == 0, (training, registers, spills)
        for needle in ("st.relaxed.gpu.global.b32", "ld.volatile.global.v4.b32", "setmaxnreg",
                       "fence.proxy.async.shared::cta", "mbarrier.arrive.shared::cta.b64", "%globaltimer",
                       "wgmma.mma_async", "cp.async.bulk.tensor.2d", "cp.async.commit_group"):
            assert needle in ptx, (training, needle)
        for absent in ("cp.async.bulk.tensor.3d", *POLL_PTX, ".release.", "fence.proxy.async.global", ".exch.",
                       "nanosleep"):
            assert absent not in ptx, (training, absent)


def _shared_layout_bases(element_bits: int, arch: int) -> list[list[int]]:
    """The offset bases (element offset bit -> (row, column)) of the Gluon forward's shared layout of a
    16-row state tile of ``element_bits``-bit elements (16: the MMAs' ``_TILE_LAYOUT``, 32: the tagged
    loader's ``_PAIRS_LAYOUT``), as Gluon's ``to_linear_layout`` gives it while compiling (a job for
    ``compile_all``)."""
    import ast
    import contextlib
    import io
    import os
    import tempfile

    from triton.backends.compiler import GPUTarget
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource

    from rnnbench.kernels.gluon_lstm import _PAIRS_LAYOUT, _TILE_LAYOUT

    @gluon.jit
    def show(x, BITS: gl.constexpr):
        if BITS == 16:
            gl.static_print(gl.to_linear_layout(_TILE_LAYOUT, [16, 64]))
        else:
            gl.static_print(gl.to_linear_layout(_PAIRS_LAYOUT, [16, 32]))

    printed = io.StringIO()
    # a fresh cache: a cached compile prints nothing
    with tempfile.TemporaryDirectory() as cache, contextlib.redirect_stdout(printed):
        os.environ["TRITON_CACHE_DIR"] = cache
        triton.compile(GluonASTSource(show, {"x": "*i32", "BITS": "constexpr"}, constexprs={"BITS": element_bits}),
                       target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    return ast.literal_eval(re.search(r"offset_bases=(\[.*?\]\])", printed.getvalue()).group(1))


def _byte_of(bases: list[list[int]], element_bytes: int) -> dict[tuple[int, int], int]:
    """(row, column) -> byte offset of a shared layout given by its offset bases."""
    where = {}
    for offset in range(1 << len(bases)):
        row = column = 0
        for bit, (base_row, base_column) in enumerate(bases):
            if offset >> bit & 1:
                row, column = row ^ base_row, column ^ base_column
        where[(row, column)] = offset * element_bytes
    return where


@pytest.mark.skipif(not hasattr(__import__("triton.experimental.gluon.language", fromlist=["x"]), "to_linear_layout")
                    or tuple(int(part) for part in triton.__version__.split(".")[:2]) <= (3, 6),
                    reason="this Triton's Gluon has no to_linear_layout of a shared layout (3.6's takes registers' only)")
def test_a_state_tile_seen_as_int32_pairs_puts_every_pair_at_its_two_values_bytes():
    """The tagged loader stores int32 pairs into the MMAs' 16-bit state tiles through a view
    (:func:`rnnbench.kernels.gluon_lstm._as_pairs`): with 128-byte swizzle, pair j of row r must sit
    at the bytes of values 2j and 2j+1 of row r, or the MMAs read a scrambled state."""
    halves, pairs = (_byte_of(bases, bits // 8) for bits, bases in
                     zip((16, 32), compile_all(90, [16, 32], job=_shared_layout_bases)))
    assert len(halves) == 16 * 64 and len(pairs) == 16 * 32
    for (row, column), byte in pairs.items():
        assert (halves[(row, 2 * column)], halves[(row, 2 * column + 1)]) == (byte, byte + 2), (row, column)
    assert pairs[(1, 0)] == 128 + 16 and halves[(1, 0)] == 128 + 16, "swizzled: row 1's first chunk is its second"


def _delayed_tagged_ptx(delay_ns: int, arch: int) -> str:
    """PTX of the tagged Gluon forward at H=768 B=16 whose loader pauses ``delay_ns`` (a job for
    ``compile_all``)."""
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange, tagged_poll_delay

    with tagged_exchange(True), tagged_poll_delay(delay_ns):
        return compile_forward(plan_gluon("lstm", 768, 16, torch.bfloat16, 132), torch.bfloat16, training=False,
                               has_lengths=False, arch=arch).asm["ptx"]


def test_the_tagged_loaders_poll_delay_is_one_nanosleep_of_it():
    """With :func:`rnnbench.kernels.switches.tagged_poll_delay`, each loader warp sleeps that many
    nanoseconds before each step's first load: one ``nanosleep`` with the delay as its immediate in
    each of the loader partitions."""
    (ptx,) = compile_all(90, [150], job=_delayed_tagged_ptx)
    assert ptx.count("nanosleep.u32 150;") == GLUON_TAGGED_LOADERS  # one in each loader partition


def _tagged_state_loads(hidden_size: int, arch: int) -> list:
    """``(predicate, opcode, address operand)`` of every volatile load (``STRONG.SYS``) in the SASS of
    the tagged Gluon forward at ``hidden_size``, B=16 (a job for ``compile_all``)."""
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange
    from rnnbench.kernels.sass import disassemble, parse

    with tagged_exchange(True):
        compiled = compile_forward(plan_gluon("lstm", hidden_size, 16, torch.bfloat16, 132), torch.bfloat16,
                                   training=False, has_lengths=False, arch=arch)
    return [(ins.predicate, ins.opcode, ins.operands[-1]) for ins in parse(disassemble(compiled.asm["cubin"]))
            if ins.base == "LDG" and "SYS" in ins.modifiers]


def test_the_tagged_loader_reloads_stale_state_in_whole_vectors_at_the_first_loads_addresses():
    """The loaders' slow path (:func:`rnnbench.kernels.gluon_lstm._reload_stale_vectors`) loads a
    16-byte vector again whole, one predicated 128-bit load each, from where the step's first load
    of that vector read (an address register and offset of the first loads): 12 in each loader
    partition at H=768 (3 tiles of 4 rows a thread: 12 vectors). No scalar volatile load: a mask per
    pair would split every vector into four, and an inline-asm vector whose elements were packed in
    another order would load from elsewhere."""
    (loads,) = compile_all(90, [768], job=_tagged_state_loads)
    assert all(".128." in opcode + "." for _, opcode, _ in loads), loads
    reloads = [address for predicate, _, address in loads if predicate]
    first = {address for predicate, _, address in loads if not predicate}
    assert len(reloads) == 12 * GLUON_TAGGED_LOADERS, loads
    assert set(reloads) <= first, (reloads, first)


def _tagged_loader_ptx(loaders: int, arch: int) -> tuple:
    """``(spill bytes, PTX)`` of the tagged Gluon forward at H=768 B=16 with ``loaders`` loader
    partitions (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange, tagged_loaders

    with tagged_exchange(True), tagged_loaders(loaders):
        compiled = compile_forward(plan_gluon("lstm", 768, 16, torch.bfloat16, 132), torch.bfloat16, training=False,
                                   has_lengths=False, arch=arch)
    return cubin_resources(compiled.asm["cubin"])[1], compiled.asm["ptx"]


def test_the_tagged_loaders_are_four_one_warp_partitions_or_one_of_four_warps():
    """:func:`rnnbench.kernels.switches.tagged_loaders`: 4 loader partitions each arrive once on the
    state's mbarrier (initialised for 4 arrivals) after a warp-level barrier, with no CTA-wide one;
    1 loader partition of four warps arrives once (1 arrival) after a barrier of its 128 threads.
    No spill either way (inference); the recurrence's arrive on ``h_free`` is the other arrive."""
    for loaders, (spills, ptx) in zip((4, 1), compile_all(90, [4, 1], job=_tagged_loader_ptx)):
        inits = [int(count) for count in re.findall(r"mbarrier\.init\.shared::cta\.b64 \[[^\]]+\], (\d+);", ptx)]
        arrives = len(re.findall(r"mbarrier\.arrive\.shared::cta\.b64", ptx))
        assert spills == 0 and inits[0] == loaders and arrives == loaders + 1, (loaders, spills, inits, arrives)
        assert ("bar.warp.sync" in ptx) == (loaders == 4), loaders


def _two_chain_sass(shape: tuple[int, int], arch: int = 90) -> tuple:
    """``(spill bytes, registers, SASS)`` of the tagged Gluon forward at ``shape = (H, B)`` with its
    recurrent product in two MMA chains (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import mma_chains, tagged_exchange
    from rnnbench.kernels.sass import disassemble

    hidden_size, batch = shape
    with tagged_exchange(True), mma_chains(2):
        compiled = compile_forward(plan_gluon("lstm", hidden_size, batch, torch.bfloat16, 132), torch.bfloat16,
                                   training=False, has_lengths=False, arch=arch)
    registers, spills = cubin_resources(compiled.asm["cubin"])
    return spills, registers, disassemble(compiled.asm["cubin"])


def test_two_mma_chains_accumulate_into_two_register_sets_without_spilling():
    """:func:`rnnbench.kernels.switches.mma_chains` (2): the step's ``4 * H_PAD / 64`` warpgroup MMAs
    write two accumulators, half of them each where the tiles split evenly (the anchor's 6 shared
    and 6 register tiles; H=256's 4 register tiles in turn), 14 + 2 tiles at H=1024, and nothing
    spills; the kernel without the switch keeps one accumulator."""
    from rnnbench.kernels.sass import parse, step_path

    shapes = [(256, 16), (768, 16), (1024, 16)]
    for (hidden_size, _), (spills, registers, text) in zip(shapes, compile_all(90, shapes, job=_two_chain_sass)):
        mmas = [ins for ins in step_path(parse(text)).instructions if ins.base == "HGMMA"]
        per_accumulator = sorted(Counter(ins.operands[0] for ins in mmas).values())
        expected = {256: [8, 8], 768: [24, 24], 1024: [8, 56]}[hidden_size]
        assert spills == 0 and registers <= 255, (hidden_size, spills, registers)
        assert len(mmas) == 4 * hidden_size // 64 and per_accumulator == expected, (hidden_size, per_accumulator)


def _traced_sass(tagged: bool, arch: int = 90) -> tuple:
    """``(spill bytes, registers, SASS of the traced kernel, instructions of the untraced one)`` of
    the Gluon forward at H=768 B=16, tagged or with its grid barrier (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange
    from rnnbench.kernels.sass import disassemble, parse

    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    with tagged_exchange(tagged):
        traced, untraced = (compile_forward(plan, torch.bfloat16, training=False, has_lengths=False, arch=arch,
                                            trace=trace) for trace in (True, False))
    registers, spills = cubin_resources(traced.asm["cubin"])
    return spills, registers, disassemble(traced.asm["cubin"]), len(parse(disassemble(untraced.asm["cubin"])))


def test_the_traced_forward_fits_and_stamps_its_product_after_the_mmas_complete():
    """The step trace's kernel (:mod:`rnnbench.kernels.step_trace`), tagged and with the grid barrier,
    at the anchor: no spill; one ``%clock64`` read per event of the recurrence (5) and, tagged, of
    the loader (4, ``first_load``'s two: a read that waits for a value, ``clock64_after``);
    ``product_done``'s read after the wait for the last MMA group; and few instructions more than
    the untraced kernel (a read, an address and a store per event)."""
    from rnnbench.kernels.sass import parse

    for tagged, (spills, registers, text, untraced) in zip((True, False), compile_all(90, [True, False],
                                                                                      job=_traced_sass)):
        instructions = parse(text)
        clocks = [i for i, ins in enumerate(instructions) if ins.base == "CS2R" and "SR_CLOCKLO" in ins.operands]
        last_mma = max(i for i, ins in enumerate(instructions) if ins.base == "HGMMA")
        after = next(i for i in clocks if i > last_mma)
        assert spills == 0 and registers <= 255, (tagged, spills, registers)
        assert len(clocks) == (10 if tagged else 5), (tagged, len(clocks))
        assert any(ins.opcode.startswith("WARPGROUP.DEPBAR") for ins in instructions[last_mma:after]), tagged
        assert len(instructions) - untraced < 120, (tagged, len(instructions), untraced)



def _overlapped_ptx(case: tuple[bool, int, bool], arch: int = 90) -> tuple:
    """``(spill bytes, registers, PTX)`` of the Gluon forward at H=768 B=16, ``case = (tagged, input
    chunk, inference switches)``: polling the overlapped projection's flags every ``input chunk``
    steps (0: not at all), tagged or with its grid barrier, and with the tagged loader's threads
    polling alone and the gates split inside each warp too (the harness's
    ``triton-inference-switches``) or not (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import local_gates, tagged_exchange, tagged_thread_poll

    tagged, chunk, switches = case
    with tagged_exchange(tagged), tagged_thread_poll(switches), local_gates(switches):
        compiled = compile_forward(plan_gluon("lstm", 768, 16, torch.bfloat16, 132), torch.bfloat16, training=False,
                                   has_lengths=False, arch=arch, input_chunk=chunk)
    registers, spills = cubin_resources(compiled.asm["cubin"])
    return spills, registers, compiled.asm["ptx"]


def test_the_forward_beside_an_overlapped_projection_polls_its_flags_with_acquire_loads():
    """``XG_CHUNK`` (:mod:`rnnbench.kernels.overlapped_projection`): the flag of the first chunk before
    the loop and of each later one in it, each an acquire load (once, and again in the wait's
    loop: 4 in all), tagged and with the grid barrier, and tagged with every other inference switch
    on (the thread poll, the warp-local gates: the cost model's lowest estimate at the anchor),
    without spilling; the shipped (tagged) kernel has none."""
    cases = [(True, 32, False), (False, 32, False), (True, 0, False), (True, 32, True)]
    for case, (spills, registers, ptx) in zip(cases, compile_all(90, cases, job=_overlapped_ptx)):
        assert spills == 0 and registers <= 255, (case, spills, registers)
        assert ptx.count("ld.global.acquire.gpu.b32") == (4 if case[1] else 0), case


def _grouped_sass(groups: int, arch: int = 90) -> tuple:
    """``(spill bytes, registers, SASS)`` of the tagged Gluon forward at H=768 B=16 with its loader
    handing the state over in ``groups`` groups (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange, tagged_groups
    from rnnbench.kernels.sass import disassemble

    with tagged_exchange(True), tagged_groups(groups):
        compiled = compile_forward(plan_gluon("lstm", 768, 16, torch.bfloat16, 132), torch.bfloat16, training=False,
                                   has_lengths=False, arch=arch)
    registers, spills = cubin_resources(compiled.asm["cubin"])
    return spills, registers, disassemble(compiled.asm["cubin"])


def test_the_tagged_loaders_hand_over_in_groups_arrives_once_a_group_after_loading_every_tile():
    """:func:`rnnbench.kernels.switches.tagged_groups` (4) at the anchor: the loader issues the step's 12
    volatile vector loads before its first staleness reduction, arrives on an mbarrier per group
    (4 where one hand-over arrives once; the recurrence's arrival on ``h_free`` and the step-0 path
    are the same in both), the recurrence waits once per group, and nothing spills."""
    from rnnbench.kernels.sass import parse

    (spills_1, _, one), (spills, registers, grouped) = compile_all(90, [1, 4], job=_grouped_sass)
    assert spills == spills_1 == 0 and registers <= 255

    def counts(text):
        instructions = parse(text)
        arrivals = sum(ins.opcode.startswith("SYNCS.ARRIVE") for ins in instructions)
        waits = sum(ins.opcode.startswith("SYNCS.PHASECHK") for ins in instructions)
        first_shuffle = next(i for i, ins in enumerate(instructions) if ins.base == "SHFL")
        loads_before = sum(ins.base == "LDG" and "SYS" in ins.modifiers for ins in instructions[:first_shuffle])
        return arrivals, waits, loads_before

    (arrivals_1, waits_1, _), (arrivals, waits, loads_before) = counts(one), counts(grouped)
    assert arrivals - arrivals_1 == 3 and waits > waits_1, (arrivals_1, arrivals, waits_1, waits)
    assert loads_before >= 12, loads_before


def _thread_poll_sass(hidden_size: int, arch: int = 90) -> tuple:
    """``(spill bytes, registers, SASS)`` of the tagged Gluon forward at ``hidden_size``, B=16, with
    its loader's threads polling alone (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import tagged_exchange, tagged_thread_poll
    from rnnbench.kernels.sass import disassemble

    with tagged_exchange(True), tagged_thread_poll(True):
        compiled = compile_forward(plan_gluon("lstm", hidden_size, 16, torch.bfloat16, 132), torch.bfloat16,
                                   training=False, has_lengths=False, arch=arch)
    registers, spills = cubin_resources(compiled.asm["cubin"])
    return spills, registers, disassemble(compiled.asm["cubin"])


def test_the_tagged_loaders_threads_polling_alone_need_no_shuffle_and_one_hand_over_barrier():
    """:func:`rnnbench.kernels.switches.tagged_thread_poll` at the anchor: the loader's step (the cost
    model's path, first load complete and with a reload) has no shuffle, the 12 volatile vector loads,
    the hand-over's CTA barriers only (at most 2, one per Triton's fence lowering; the reducing
    loader has 4 with Triton 3.6, 3 with 3.9), its reload predicated vector loads, and nothing spills."""
    from rnnbench.kernels.sass import count, loader_path, parse

    (spills, registers, text), = compile_all(90, [768], job=_thread_poll_sass)
    assert spills == 0 and registers <= 255
    instructions = parse(text)
    complete, reload = count(loader_path(instructions, True)), count(loader_path(instructions))
    assert complete.shfl == reload.shfl == 0, (complete, reload)
    assert complete.bar <= 2 and reload.bar <= 2, (complete, reload)
    assert complete.global_loads == 12 and reload.global_loads > 12, (complete, reload)
    predicated = [ins for ins in instructions if ins.base == "LDG" and "SYS" in ins.modifiers and ins.predicate]
    assert len(predicated) >= 12, len(predicated)


# ---- the warp-local gate split (switches.local_gates) --------------------------------------------------

def _positions(reg_bases, lane_bases, warp_bases) -> dict[tuple[int, int, int], tuple[int, int]]:
    """(warp, lane, register) -> (row, column) of a distributed linear layout given by its bases."""
    where = {}
    for warp in range(1 << len(warp_bases)):
        for lane in range(1 << len(lane_bases)):
            for register in range(1 << len(reg_bases)):
                row = column = 0
                for index, bases in ((register, reg_bases), (lane, lane_bases), (warp, warp_bases)):
                    for bit, (base_row, base_column) in enumerate(bases):
                        if index >> bit & 1:
                            row, column = row ^ base_row, column ^ base_column
                where[(warp, lane, register)] = (row, column)
    return where


def test_the_local_gate_layout_gives_each_thread_the_four_gates_of_two_adjacent_units_of_its_warp():
    """:data:`rnnbench.kernels.gluon_lstm._LOCAL_GATES_LAYOUT` over the ``(64, 16)`` product whose row
    ``16w + 4G + u`` is gate G of unit ``4w + u`` (:func:`rnnbench.kernels.gluon_lstm.local_gate_rows`):
    every element once; warp w holds rows ``16w .. 16w+15``, as the warpgroup MMA's accumulator does
    (so the conversion stays inside each warp); and each thread's 8 registers are the 4 gates of
    units ``4w + 2(lane & 1)`` and the next, of batch row ``lane >> 1``: the tile layout's units and
    row of that thread, so the four gate tiles need no conversion after the split."""
    from rnnbench.kernels.gluon_lstm import _LOCAL_GATES_LAYOUT

    layout = _LOCAL_GATES_LAYOUT.value
    assert list(layout.shape) == [64, 16] and not layout.block_bases
    where = _positions(layout.reg_bases, layout.lane_bases, layout.warp_bases)
    assert sorted(where.values()) == [(row, column) for row in range(64) for column in range(16)]
    for warp in range(4):
        for lane in range(32):
            held = {where[(warp, lane, register)] for register in range(8)}
            units = (4 * warp + 2 * (lane & 1), 4 * warp + 2 * (lane & 1) + 1)
            assert held == {(16 * warp + 4 * gate + unit % 4, lane >> 1) for gate in range(4) for unit in units}, \
                (warp, lane, sorted(held))


def test_the_local_gate_rows_put_each_programs_gates_where_the_split_takes_them():
    """``W_hh``'s rows reordered for the warp-local split (:func:`rnnbench.kernels.gluon_lstm.local_gate_rows`),
    then the program's 64-row product taken apart as :func:`rnnbench.kernels.gluon_lstm._local_gate_tiles`
    takes it (reshape to ``(w, G1, G0, u, b)``, permute to ``(w, u, b, G1, G0)``, split G0 then G1),
    replayed in torch: each gate tile is that gate's rows of the gate-major weights times h, for
    every program and both directions; a padded row stride is kept."""
    from rnnbench.kernels.gluon_lstm import local_gate_rows

    generator = torch.Generator().manual_seed(0)
    hidden, width, batch = 48, 56, 16
    w_rows = torch.randn(2, 4 * hidden, width, generator=generator, dtype=torch.float64)
    h = torch.randn(width, batch, generator=generator, dtype=torch.float64)
    local = local_gate_rows(w_rows)
    assert local.shape == w_rows.shape and local.is_contiguous()
    for direction in range(2):
        for program in range(hidden // 16):
            product = local[direction, 64 * program:64 * program + 64] @ h
            z = product.reshape(4, 2, 2, 4, batch).permute(0, 3, 4, 1, 2).reshape(16, batch, 2, 2)
            even, odd = z[..., 0], z[..., 1]
            tiles = (even[..., 0], odd[..., 0], even[..., 1], odd[..., 1])  # i, f, g, o
            for gate, tile in enumerate(tiles):
                rows = gate * hidden + 16 * program + torch.arange(16)
                torch.testing.assert_close(tile, w_rows[direction, rows] @ h, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="H a multiple of 16.*200 rows"):
        local_gate_rows(torch.zeros(1, 200, 64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_the_local_gates_xg_pairs_unpack_to_their_units_in_order(dtype):
    """The warp-local split's ``xg`` comes in as int32 pairs of adjacent units
    (:func:`rnnbench.kernels.gluon_lstm._load_gates`) and is unpacked where it is used
    (:func:`rnnbench.kernels.gluon_lstm._unpack_gate`: the low half, the even unit; join, permute
    ``(pair, b, half) -> (pair, half, b)``, reshape to ``(unit, b)``), replayed in torch: every
    value of a ``(16 units, B)`` tile back in its place, bit for bit."""
    generator = torch.Generator().manual_seed(0)
    batch = 16
    tile = torch.randn(batch, 16, generator=generator).to(dtype)  # xg's layout: a row's units contiguous
    pairs = tile.contiguous().view(torch.int32).T  # (8 pairs, B), as the kernel loads them
    low = (pairs & 0xFFFF).to(torch.int16).view(dtype).float()
    high = (pairs >> 16).to(torch.int16).view(dtype).float()
    units = torch.stack([low, high], dim=-1).permute(0, 2, 1).reshape(16, batch)
    assert torch.equal(units, tile.T.float())


def _local_gates_sass(job: tuple[int, bool], arch: int = 90) -> tuple:
    """``(spill bytes, registers, SASS)`` of the tagged Gluon forward at ``(hidden size, thread poll)``,
    B=16, with the warp-local gate split (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_gluon
    from rnnbench.kernels.switches import local_gates, tagged_exchange, tagged_thread_poll
    from rnnbench.kernels.sass import disassemble

    hidden_size, thread_poll = job
    with tagged_exchange(True), tagged_thread_poll(thread_poll), local_gates(True):
        compiled = compile_forward(plan_gluon("lstm", hidden_size, 16, torch.bfloat16, 132), torch.bfloat16,
                                   training=False, has_lengths=False, arch=arch)
    registers, spills = cubin_resources(compiled.asm["cubin"])
    return spills, registers, disassemble(compiled.asm["cubin"])


def test_the_warp_local_gate_split_leaves_the_recurrence_two_cta_barriers_and_no_shared_xg():
    """:func:`rnnbench.kernels.switches.local_gates` at the anchor, alone and with the thread-polling
    loader, and at H=1024: nothing spills; the recurrence's step (the cost model's path) has at most
    2 CTA barriers (5 without it with Triton 3.6, 3 with 3.9: the gate split's two and the ``xg``
    copies' are gone, so no conversion crossed warps), no ``cp.async`` and no ``ldmatrix`` (``xg``
    comes in by 4 plain loads a step ahead), no shuffle, and at most 4 shared-memory stores (the
    conversion inside each warp; 8 with the split through shared memory)."""
    from rnnbench.kernels.sass import count, parse, step_path

    jobs = [(768, False), (768, True), (1024, True)]
    for job, (spills, registers, text) in zip(jobs, compile_all(90, jobs, job=_local_gates_sass)):
        assert spills == 0 and registers <= 255, job
        step = step_path(parse(text))
        bases = Counter(ins.base for ins in step.instructions)
        assert count(step).bar <= 2, (job, count(step))
        assert bases["LDGSTS"] == bases["LDSM"] == bases["SHFL"] == 0 and bases["LDG"] == 4, (job, bases)
        assert 0 < bases["STS"] <= 4, (job, bases)


def _backward_sass(variant: tuple[int, bool], arch: int) -> tuple:
    """``(registers, spill bytes, shared bytes, SASS)`` of the Gluon backward at ``(hidden,
    streamed)``, B=16, with its copies streamed or after the grid barrier (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm_backward import compile_backward
    from rnnbench.kernels.plan import gluon_streamed_copies, plan_gluon
    from rnnbench.kernels.switches import streamed_copies
    from rnnbench.kernels.sass import disassemble

    hidden, streamed = variant
    with streamed_copies(streamed):
        plan = plan_gluon("lstm", hidden, 16, torch.bfloat16, 132, backward=True)
        assert gluon_streamed_copies(plan) == streamed, plan
        compiled = compile_backward(plan, torch.bfloat16, has_lengths=False, arch=arch)
    return (*cubin_resources(compiled.asm["cubin"]), compiled.metadata.shared, disassemble(compiled.asm["cubin"]))


def test_the_streamed_backward_polls_and_copies_in_its_copier_warp_and_multiplies_without_a_grid_barrier():
    """With streamed copies (:func:`rnnbench.kernels.switches.streamed_copies`) the Gluon backward fits
    (no spill; 168 registers at launch, the 8 + 4 warps' share, the copier's warpgroup then handing
    its registers over with ``setmaxnreg``), and its work is split as designed: the loop that polls
    the producers' flags (strong loads) issues the TMA copies and holds no CTA barrier (one warp
    polls: a barrier there would hang with the recurrence's warps elsewhere); the loop of the
    step's MMAs polls no flag and holds at most 4 CTA barriers (the barrier kernel's: 10-12)."""
    from rnnbench.kernels import sass

    for hidden, (registers, spill, _, text) in zip((768, 1024), compile_all(90, [(768, True), (1024, True)],
                                                                            job=_backward_sass)):
        assert spill == 0 and registers == 168, (hidden, registers, spill)
        assert "USETMAXREG.DEALLOC" in text and "USETMAXREG.TRY_ALLOC" in text, hidden
        loops = sass.loops(sass.parse(text))
        # the innermost loops: the copier's poll, and the recurrence's step (every MMA of a step)
        poll = min((loop for loop in loops if any(ins.opcode.startswith("LDG") and ins.strong for ins in loop)),
                   key=len)
        assert sum(ins.opcode.startswith("UTMALDG") for ins in poll) == 4 * hidden // 64 // 8, hidden
        assert not any(ins.opcode.startswith(("BAR.SYNC", "HMMA")) for ins in poll), hidden
        step = min((loop for loop in loops if sum(ins.opcode.startswith("HMMA") for ins in loop) == 4 * hidden // 64),
                   key=len)
        assert not any(ins.opcode.startswith("LDG") and ins.strong for ins in step), hidden
        assert sum(ins.opcode.startswith("BAR.SYNC") for ins in step) <= 4, hidden


def test_the_cost_model_times_the_streamed_backwards_copies_from_the_release_through_the_copier():
    """The model of the streamed backward (:func:`rnnbench.kernels.cost.copier_handoffs`): one
    handoff per copy (6 at H=768), each after the recurrence's release, each copy landing after the
    one issued before it; the recurrence's wait for them is the ``loader`` term, no poll is left on
    its path, and with 6 CTA barriers fewer its raw step is below the barrier kernel's."""
    from rnnbench.kernels import cost, sass
    from rnnbench.kernels.plan import plan_gluon

    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132, backward=True)
    compiled = compile_all(90, [(768, True), (768, False)], job=_backward_sass)
    streamed, barrier = (text for *_, text in compiled)
    copier = sass.copier_path(sass.parse(streamed))
    assert copier is not None and sass.copier_path(sass.parse(barrier)) is None
    context = cost.step_context(plan, torch.bfloat16, "bwd", 1)
    handoffs = cost.copier_handoffs(copier, context, 0.0)
    assert len(handoffs) == 6 and {handoff.after for handoff in handoffs} == {cost.RELEASE}
    assert len({handoff.arrives for handoff in handoffs}) == 6
    assert all(later.cycles > earlier.cycles for earlier, later in zip(handoffs, handoffs[1:]))
    estimates = [cost.step_estimate(text, plan, registers, shared, dtype=torch.bfloat16, hidden_size=768, batch=16,
                                    direction="bwd") for registers, _, shared, text in compiled]
    assert estimates[0]["t_loader"] > 0 == estimates[1]["t_loader"]
    assert estimates[0]["poll_loops"] == 0 < estimates[1]["poll_loops"]
    assert estimates[0]["bar"] <= 4 < estimates[1]["bar"]
    assert estimates[0]["raw_us_per_step"] < estimates[1]["raw_us_per_step"]
