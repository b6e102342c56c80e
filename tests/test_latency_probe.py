"""The latency probes (rnnbench.kernels.latency_probe): without a GPU, each probe's kernel compiles
for sm_90 to the primitive it times, in a loop the cost model reads, and the command refuses what it
cannot do; on a GPU, each probe measures something plausible (the session runs this file)."""

import csv
import math
from dataclasses import replace

import pytest
import torch

from rnnbench.kernels import cost, latency_probe, sass
from rnnbench.kernels.aot import compile_all
from rnnbench.kernels.calibration import Calibration
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
    assert model["ping_pong"] is None
    # an iteration of the barrier probe is 64 barriers (one alone is too short to time with events)
    assert lat.bar <= model["cta_barrier"] / PROBES["cta_barrier"].loop_iterations < lat.bar + 10
    assert all(value > 0 for value in model.values() if value is not None)


def test_the_table_renders_from_the_csv(tmp_path, capsys):
    path = tmp_path / "latency.csv"
    row = {column: "" for column in latency_probe.COLUMNS} | {
        "device_name": "NVIDIA H200", "probe": "load_relaxed", "what": "dependent loads", "iterations": "1000",
        "ops_per_iteration": "1", "ns_per_iteration": "310.5", "q25_ns": "309.0", "q75_ns": "312.0",
        "cycles_per_iteration": "612.0", "clock_ghz": "1.971", "model_cycles": "290.0",
        "measured_over_model": "2.11", "ns_per_op": "310.5", "cycles_per_op": "612.0"}
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=latency_probe.COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    assert latency_probe.main(["--render", str(path)]) == 0
    table = capsys.readouterr().out
    assert "| load_relaxed | dependent loads | 310.5 (309.0-312.0) | 612.0 | 1.971 | 290.0 | 2.11 | 612.0 |" in table
    assert f"| l2 (coherent load round trip) | {float(LATENCIES[90].l2)} | 602.0 | load_relaxed |" in table


def _row(probe: str, cycles: float, model: float | None, ops: int = 1) -> dict:
    return {"probe": probe, "cycles_per_iteration": str(cycles), "model_cycles": "" if model is None else str(model),
            "ops_per_iteration": str(ops)}


def test_the_table_entries_are_solved_from_their_probes():
    """Each entry is the table's value plus its probe's excess over the model (the acquire's fence
    net of the load's excess); the TMA's fixed cost and bandwidth are the line through its copies;
    a ping-pong iteration is two one-way signals."""
    lat = LATENCIES[90]
    rows = [_row("load_relaxed", 612.0, 290.0), _row("load_acquire", 700.0, 312.0), _row("cta_barrier", 30.0, 22.0),
            _row("release_s0", 900.0, 420.0), _row("release_s1", 910.0, 428.0), _row("release_s4", 940.0, 433.0),
            _row("ping_pong", 2400.0, None, 2), _row("hgmma_shared_b16", 480.0, 622.0, 24)]
    rows += [_row(f"tma_{tiles}", 468.0 + 32.0 * tiles, 400.0) for tiles in (1, 2, 4, 8)]
    entries = {entry["source"]: entry["measured"] for entry in latency_probe.table_entries(rows)}
    assert entries["load_relaxed"] == lat.l2 + 322.0
    assert entries["load_acquire - load_relaxed"] == lat.fence + 388.0 - 322.0
    assert entries["cta_barrier"] == lat.bar + 8.0
    round_trip = (lat.l2 + 322.0) / lat.l2
    assert entries["release_s0 - the store's change"] == pytest.approx(lat.membar + 480.0 - lat.store * (round_trip - 1))
    by_field = {entry["field"]: entry["measured"] for entry in latency_probe.table_entries(rows) if entry["field"]}
    assert by_field["store"] == pytest.approx(lat.store * round_trip, abs=0.05)
    assert by_field["atomic"] == pytest.approx(lat.atomic * round_trip, abs=0.05)
    assert entries["(release_s4 - release_s1) / 3"] == 10.0
    assert entries["tma_* line, intercept"] == 468.0 and entries["tma_* line, slope"] == 64.0
    assert entries["hgmma_shared_b16"] == 20.0
    assert entries["ping_pong / 2"] == 1200.0
    assert latency_probe.table_entries([_row("load_relaxed", 612.0, None)]) == []  # no estimate, nothing solved


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
        assert (model == "") == (name == "ping_pong") and (model == "" or math.isfinite(float(model)))
    assert cycles["load_acquire"] >= 0.9 * cycles["load_relaxed"]
    if "tma_8" in rows:
        assert cycles["tma_8"] >= cycles["tma_1"]


def _probe_rows(l2: float = 612.0) -> list[dict]:
    rows = [_row("load_relaxed", l2, 290.0), _row("load_acquire", l2 + 60.0, 312.0), _row("cta_barrier", 30.0, 22.0),
            _row("release_s0", 900.0, 420.0)]
    return [row | {"device_name": "NVIDIA H200"} for row in rows]


@pytest.fixture
def latency_table(tmp_path, monkeypatch):
    """The model's measured latency table redirected to a file of the test's own (absent at first)."""
    path = tmp_path / "cost-latencies-sm_90.json"
    monkeypatch.setattr(cost, "latency_table_path", lambda arch: path)
    cost.latencies.cache_clear()
    yield path
    cost.latencies.cache_clear()


def test_adopted_entries_become_the_models_table_and_the_calibration_notices(latency_table):
    """``--adopt`` writes the six entries the model takes; the model's table is the prior with them
    (the other entries unchanged); a calibration fitted with the prior table says it no longer fits."""
    lat = LATENCIES[90]
    calibration = Calibration("sm_90", "NVIDIA H200", {}, 1.0, 1, 0.1, 0.1)
    assert cost.latencies(90) == lat and calibration.table_mismatch(90) is None
    written = latency_probe.adopt(_probe_rows(l2=290.0 + 280.0), latency_table)  # a round trip twice the prior's
    assert written["entries"] == {"l2": 2 * lat.l2, "store": 2 * lat.store, "atomic": 2 * lat.atomic,
                                  "fence": lat.fence + 38.0, "bar": lat.bar + 8.0,
                                  "membar": lat.membar + 480.0 - lat.store} and written["rejected"] == {}
    cost.latencies.cache_clear()
    table = cost.latencies(90)
    assert (table.l2, table.store, table.atomic, table.fence, table.bar, table.membar) == (560.0, 560.0, 600.0, 58.0,
                                                                                         28.0, 300.0)
    assert (table.dram, table.hgmma, table.lds) == (lat.dram, lat.hgmma, lat.lds)
    assert "refit it" in calibration.table_mismatch(90)
    assert replace(calibration, latencies=written["entries"]).table_mismatch(90) is None


def test_a_measured_entry_far_from_the_prior_is_not_adopted(latency_table, capsys):
    written = latency_probe.adopt(_probe_rows(l2=290.0 + 280.0 * 9), latency_table)  # l2 10x the prior's
    assert "l2" not in written["entries"] and "not within 8x of the prior 280" in written["rejected"]["l2"]
    with pytest.raises(ValueError, match="may set l2, store, atomic, fence, bar, membar, got 'dram'"):
        cost.measured_latencies(LATENCIES[90], {"dram": 300.0})
    empty = latency_table.parent / "nothing.csv"
    empty.write_text(",".join(latency_probe.COLUMNS) + "\n")
    assert latency_probe.main(["--adopt", str(empty), "--table-file", str(latency_table)]) == 1
    assert "no probe measured an entry the model takes" in capsys.readouterr().err


def test_the_fitted_what_if_table_loads_and_a_bad_table_is_a_usage_error(tmp_path, capsys):
    """The committed what-if (the L2 round trips at twice the prior) is a valid table that the model
    does not use by itself; ``rnnbench kernels --cost --latencies`` refuses a file without entries."""
    from pathlib import Path

    from rnnbench.harness.cli import main

    what_if = Path(cost.__file__).resolve().parent.parent / "reports" / "aot" / "cost-latencies-sm_90-round-trips-x2.json"
    table = cost.load_latencies(what_if, 90)
    lat = LATENCIES[90]
    assert (table.l2, table.store, table.atomic) == (2 * lat.l2, 2 * lat.store, 2 * lat.atomic)
    assert (table.fence, table.bar, table.membar) == (lat.fence, lat.bar, lat.membar)
    assert what_if != cost.latency_table_path(90)
    bad = tmp_path / "bad.json"
    bad.write_text('{"l2": 560}')
    assert main(["kernels", "--cost", "--latencies", str(bad)]) == 2
    assert "is not a latency table: it needs an 'entries' object" in capsys.readouterr().err
