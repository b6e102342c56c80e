"""The latency probes (rnnbench.kernels.latency_probe): without a GPU, each probe's kernel compiles
for sm_90 to the primitive it times, in a loop the cost model reads, and the command refuses what it
cannot do; on a GPU, each probe measures something plausible (run alone: the session's ``latency``
stage runs the same command). What their CSV says about the model's table: test_latency_table.py."""

import csv
import math

import pytest
import torch

from rnnbench.kernels import latency_probe, sass
from rnnbench.kernels.aot import compile_all
from rnnbench.kernels.cost import LATENCIES

PROBES = {probe.name: probe for probe in latency_probe.probes()}


@pytest.fixture(scope="module")
def compiled():
    """``{name: (loop instructions, whole SASS, (registers, spill bytes))}`` of every probe for sm_90."""
    try:
        results = compile_all(90, list(PROBES), 2, job=latency_probe.compiled_probe)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    return {name: (sass.loop_path(sass.parse(text)).instructions, text, resources)
            for name, (text, resources) in zip(PROBES, results)}


def _count(loop, *bases) -> int:
    return sum(1 for ins in loop if ins.base in bases)


def test_the_chase_is_one_cycle_through_every_line():
    words, line = 64 * 32, latency_probe.LINE.value
    chain = latency_probe.chase_chain(words, seed=3)
    seen, index = [], 0
    for _ in range(words // line):
        seen.append(index)
        index = int(chain[index])
    assert index == 0 and sorted(seen) == list(range(0, words, line))
    assert seen != sorted(seen)  # random, not a stride a prefetcher follows
    assert not chain[torch.arange(words) % line != 0].any()
    with pytest.raises(ValueError, match="at least 2 lines of 32 words, got 40 words"):
        latency_probe.chase_chain(40)


def test_every_probe_compiles_without_spills_to_a_loop_of_its_primitive(compiled):
    for name, probe in PROBES.items():
        loop, _, (registers, spills) = compiled[name]
        assert spills == 0 and registers <= 255, name
        if probe.marker:
            marks = _count(loop, *probe.marker)
            assert marks and marks % probe.marks == 0, (name, marks)


def test_the_loads_are_coherent_and_only_the_acquire_invalidates(compiled):
    for name in ("load_relaxed", "load_acquire"):
        loop = compiled[name][0]
        loads = [ins for ins in loop if ins.base == "LDG"]
        assert loads and all(ins.opcode == "LDG.E.STRONG.GPU" for ins in loads), name
        assert _count(loop, "CCTL") == (len(loads) if name == "load_acquire" else 0), name


def test_the_release_fences_after_its_stores(compiled):
    for stores in (0, 1, 4):
        loop = compiled[f"release_s{stores}"][0]
        atomics = [i for i, ins in enumerate(loop) if ins.base in ("REDG", "ATOMG")]
        fences = [i for i, ins in enumerate(loop) if ins.opcode == "MEMBAR.ALL.GPU"]
        assert len(atomics) == 1 and len(fences) == 1 and fences[0] < atomics[0], stores
        assert "STRONG" in loop[atomics[0]].modifiers
        assert _count(loop[:fences[0]], "STG") == stores


def test_the_ping_pong_signals_and_polls_with_the_barriers_primitives(compiled):
    loop, text, _ = compiled["ping_pong"]
    opcodes = [ins.opcode for ins in sass.parse(text)]
    assert "CCTL.IVALL" in opcodes and "MEMBAR.ALL.GPU" in opcodes
    assert any(ins.base in ("REDG", "ATOMG") and "STRONG" in ins.modifiers for ins in loop)
    assert any("GLOBALTIMER" in operand for ins in loop for operand in ins.operands)  # its timeout, per wait
    instructions = sass.parse(text)
    # each program's SM (the check that the signals crossed between two), and the sticky "gave up" flag
    assert any("SMID" in operand for ins in instructions for operand in ins.operands)  # SR_VIRTUALSMID
    assert any(ins.base in ("REDG", "ATOMG") and "MAX" in ins.modifiers for ins in instructions)


def test_the_tagged_ping_pong_hands_over_words_without_fence_or_invalidation(compiled):
    """Its loop is the tagged exchange's: a relaxed exchange of the word, volatile polls; the one
    fence and invalidation of the kernel are after the loop (the sticky "gave up" flag's max)."""
    loop, text, _ = compiled["ping_pong_tagged"]
    assert any(ins.opcode == "ATOMG.E.EXCH.STRONG.GPU" for ins in loop)
    assert any(ins.opcode == "LDG.E.STRONG.SYS" for ins in loop)
    assert not _count(loop, "CCTL", "MEMBAR", "REDG")
    assert not any(ins.base in ("REDG", "ATOMG") and "ADD" in ins.modifiers for ins in sass.parse(text))


def test_a_cluster_barrier_releases_with_a_gpu_fence_after_the_stores(compiled):
    """Each ``barrier.cluster.arrive.release`` is a ``MEMBAR.ALL.GPU`` (so a cluster barrier's release
    waits for the stores as a flag's does), then the arrival and the wait; with ``_s1`` each thread's
    store comes before its fence."""
    for name in ("cluster_barrier_2", "cluster_barrier_16", "cluster_barrier_16_s1"):
        loop = compiled[name][0]
        arrivals = [i for i, ins in enumerate(loop) if ins.base == "UCGABAR_ARV"]
        fences = [i for i, ins in enumerate(loop) if ins.opcode == "MEMBAR.ALL.GPU"]
        assert arrivals and len(fences) == len(arrivals) == _count(loop, "UCGABAR_WAIT"), name
        assert all(fence < arrival for fence, arrival in zip(fences, arrivals)), name
        stores = [i for i, ins in enumerate(loop) if ins.base == "STG"]
        if name.endswith("_s1"):
            assert len(stores) == len(arrivals) and all(store < fence for store, fence in zip(stores, fences))
        else:
            assert not stores, name


def test_the_cluster_layout_puts_every_cta_on_the_whole_tensor():
    assert latency_probe.cluster_layout(16, 4).cga_layout == [[0]] * 4
    assert latency_probe.cluster_layout(2, 4).cga_layout == [[0]]
    for ctas in (1, 12):
        with pytest.raises(ValueError, match=f"power of two of at least 2 CTAs, got {ctas}"):
            latency_probe.cluster_layout(ctas, 4)


def test_the_gluon_probes_copy_by_tma_and_multiply_with_a_in_the_named_place(compiled):
    for tiles in (1, 2, 4, 8):
        loop = compiled[f"tma_{tiles}"][0]
        assert _count(loop, "UTMALDG") == 1 and any(ins.opcode.startswith("SYNCS.PHASECHK") for ins in loop)
    for block_b in (16, 32):
        for where in ("shared", "registers"):
            mmas = [ins for ins in compiled[f"hgmma_{where}_b{block_b}"][0] if ins.base == "HGMMA"]
            assert len(mmas) == 4 * latency_probe.HGMMA_TILES
            assert all(ins.opcode.startswith(f"HGMMA.64x{block_b}x16") for ins in mmas)
            a_operands = {ins.operands[1].startswith("R") for ins in mmas}  # HGMMA D, A, B, C
            assert a_operands == {where == "registers"}, (where, block_b)


def test_the_hmma_probes_issue_their_chains_of_mma_sync_from_registers(compiled):
    """Each HMMA probe's loop is its chains' ``HMMA.16816.F32.BF16``, nothing else of substance: one
    accumulator a chain (a chain's MMAs write the register they read), A and B the same registers
    throughout, no shared-memory loads, no spills. The model reads one chain as the table's dependent
    latency and 8 chains as the tensor pipe's rate a scheduler, twice the cycles with two warps on each."""
    lat = LATENCIES[90]
    for warps, chains, depth in latency_probe.HMMA_SHAPES:
        name = latency_probe.hmma_probe_name(warps, chains)
        loop, text, (registers, spills) = compiled[name]
        mmas = [ins for ins in loop if ins.base == "HMMA"]
        assert len(mmas) == chains * depth and all(ins.opcode.startswith("HMMA.16816.F32.BF16") for ins in mmas)
        destinations = {ins.operands[0] for ins in mmas}
        assert len(destinations) == chains and all(ins.operands[0] == ins.operands[3] for ins in mmas), name
        assert len({(ins.operands[1].split(".")[0], ins.operands[2].split(".")[0]) for ins in mmas}) == 1, name
        assert _count(loop, "LDS", "LDSM", "LDG", "STS", "BAR") == 0 and spills == 0, name
        assert PROBES[name].num_warps == warps and PROBES[name].ops == chains * depth
    model = {name: latency_probe.model_cycles(PROBES[name], compiled[name][1]) / PROBES[name].ops
             for name in ("hmma_chain", "hmma_w4_c8", "hmma_w8_c8")}
    assert model["hmma_chain"] == pytest.approx(lat.mma, rel=0.05)
    assert model["hmma_w4_c8"] < lat.mma / 4 and model["hmma_w8_c8"] == pytest.approx(2 * model["hmma_w4_c8"], rel=0.05)


def test_the_model_reads_each_probe_by_its_latency_table(compiled):
    """What the model estimates for the probes follows the table it is meant to check: a relaxed
    load is one L2 round trip, an acquire a little more; a larger TMA box takes longer; at N=16 an
    MMA with A in shared memory is slower than with A in registers."""
    model = {name: latency_probe.model_cycles(probe, compiled[name][1]) for name, probe in PROBES.items()}
    lat = LATENCIES[90]
    assert lat.l2 <= model["load_relaxed"] < lat.l2 + 40
    assert model["load_relaxed"] < model["load_acquire"]
    assert model["tma_1"] < model["tma_2"] < model["tma_4"] < model["tma_8"]
    assert model["hgmma_registers_b16"] < model["hgmma_shared_b16"]
    assert all(model[name] is None for name in ("ping_pong", "ping_pong_tagged", "cluster_barrier_16"))
    # an iteration of the barrier probe is 64 barriers (one alone is too short to time with events)
    assert lat.bar <= model["cta_barrier"] / PROBES["cta_barrier"].loop_iterations < lat.bar + 10
    assert all(value > 0 for value in model.values() if value is not None)


def test_the_command_refuses_unknown_probes_and_bad_counts(tmp_path):
    with pytest.raises(SystemExit):
        latency_probe.main(["--out", str(tmp_path / "x.csv"), "--probes", "load_relaxed,warp_drive"])
    with pytest.raises(SystemExit):
        latency_probe.main(["--out", str(tmp_path / "x.csv"), "--iterations", "0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_the_command_needs_a_gpu(tmp_path, capsys):
    assert latency_probe.main(["--out", str(tmp_path / "latency.csv")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.cuda
def test_the_probes_measure_plausible_latencies(tmp_path):
    """Every probe runs (the Gluon ones on sm_90) and takes a positive number of cycles; where an
    iteration is long enough to time with CUDA events (0.5 µs), the clock it implies is between 0.5
    and 3 GHz; an acquire load takes no fewer cycles than a relaxed one, a box of 8 tiles no fewer
    than one tile, and the two programs of the ping-pong ran on two SMs and never gave up waiting.
    Not in the GPU session's test stage (its 8 pytest workers share the GPU, and the TMA probe's
    mbarrier wait has no timeout): the session's ``latency`` stage runs the same command alone."""
    path = tmp_path / "latency.csv"
    assert latency_probe.main(["--out", str(path), "--iterations", "1000", "--repeats", "5"]) == 0
    with open(path, newline="") as handle:
        rows = {row["probe"]: row for row in csv.DictReader(handle)}
    expected = {name for name, probe in PROBES.items()
                if not probe.gluon or torch.cuda.get_device_capability() == (9, 0)}
    assert set(rows) == expected
    cycles = {name: float(row["cycles_per_iteration"]) for name, row in rows.items()}
    for name, row in rows.items():
        assert cycles[name] > 0, name
        if float(row["ns_per_iteration"]) >= 500:
            assert 0.5 < float(row["clock_ghz"]) < 3.0, name
        model = row["model_cycles"]
        assert (model == "") == (not PROBES[name].marker) and (model == "" or math.isfinite(float(model)))
    assert cycles["load_acquire"] >= 0.9 * cycles["load_relaxed"]
    if "cluster_barrier_16_s1" in rows:
        assert cycles["cluster_barrier_16_s1"] >= 0.9 * cycles["cluster_barrier_16"]
    if "tma_8" in rows:
        assert cycles["tma_8"] >= cycles["tma_1"]


def test_the_handover_probe_stores_every_tile_then_fences_for_the_async_proxy_and_arrives(compiled):
    """The hand-over probe's loop is the tagged loader's: a 16-byte shared store per tile and thread
    (12, the anchor's), then ``fence.proxy.async.shared::cta`` (a CTA-scope ``MEMBAR`` and the
    async-proxy fence), a CTA barrier, one mbarrier arrival and its wait; the model charges that
    ``MEMBAR`` as the table's ``membar``, so the probe's measured/model says what it costs."""
    loop, _, (registers, spills) = compiled["handover"]
    stores = [ins for ins in loop if ins.base == "STS"]
    assert len(stores) == latency_probe.HANDOVER_TILES and all(".128" in ins.opcode for ins in stores)
    membars = [ins for ins in loop if ins.base == "MEMBAR"]
    assert len(membars) == 1 and "CTA" in membars[0].opcode, membars
    assert _count(loop, "FENCE") == 1 and _count(loop, "BAR") >= 1
    assert any(ins.opcode.startswith("SYNCS.ARRIVE") for ins in loop)
    assert any(ins.opcode.startswith("SYNCS.PHASECHK") for ins in loop)
    assert spills == 0
