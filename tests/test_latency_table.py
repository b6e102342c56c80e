"""The latency table (rnnbench.kernels.latency_table) without a GPU: what the probes' CSV says the
cost model's entries should be, how the entries the model takes are adopted (and refused), the
committed what-if table, and the Markdown the GPU report includes."""

import csv
from dataclasses import replace

import pytest

from rnnbench.kernels import cost, latency_probe, latency_table
from rnnbench.kernels.calibration import Calibration
from rnnbench.kernels.cost import LATENCIES


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
            _row("ping_pong", 2400.0, None, 2), _row("hgmma_shared_b16", 480.0, 622.0, 24), _row("handover", 700.0, 650.0)]
    rows += [_row(f"tma_{tiles}", 468.0 + 32.0 * tiles, 400.0) for tiles in (1, 2, 4, 8)]
    entries = {entry["source"]: entry["measured"] for entry in latency_table.table_entries(rows)}
    assert entries["load_relaxed"] == lat.l2 + 322.0
    assert entries["load_acquire - load_relaxed"] == lat.fence + 388.0 - 322.0
    assert entries["cta_barrier"] == lat.bar + 8.0
    round_trip = (lat.l2 + 322.0) / lat.l2
    assert entries["release_s0 - the store's change"] == pytest.approx(lat.membar + 480.0 - lat.store * (round_trip - 1))
    by_field = {entry["field"]: entry["measured"] for entry in latency_table.table_entries(rows) if entry["field"]}
    assert by_field["store"] == pytest.approx(lat.store * round_trip, abs=0.05)
    assert by_field["atomic"] == pytest.approx(lat.atomic * round_trip, abs=0.05)
    assert entries["(release_s4 - release_s1) / 3"] == 10.0
    assert entries["tma_* line, intercept"] == 468.0 and entries["tma_* line, slope"] == 64.0
    assert entries["hgmma_shared_b16"] == 20.0
    assert entries["ping_pong / 2"] == 1200.0
    assert entries["handover, its whole excess"] == lat.membar + 50.0  # informational: no field to adopt
    assert "membar" not in {e["field"] for e in latency_table.table_entries(rows) if e["source"].startswith("handover")}
    assert latency_table.table_entries([_row("load_relaxed", 612.0, None)]) == []  # no estimate, nothing solved


def test_the_hmma_probes_say_the_mma_latency_and_the_pipes_rate_a_scheduler_but_adopt_nothing(tmp_path):
    """One chain's cycles an MMA are the dependent latency; 8 chains' are the tensor pipe's cycles an
    HMMA a scheduler, per warp on it (two with 8 warps: the plain forward's B=64 layout); none is an
    entry the model takes (the B=64 question first), so adopting them alone writes nothing."""
    rows = [_row("hmma_chain", 24 * 35.0, 792.0, 24), _row("hmma_w4_c8", 96 * 7.0, 577.0, 96),
            _row("hmma_w8_c8", 96 * 30.0, 1152.0, 96)]
    entries = {entry["source"]: entry for entry in latency_table.table_entries(rows)}
    assert entries["hmma_chain"]["measured"] == 35.0 and entries["hmma_chain"]["table"] == LATENCIES[90].mma
    assert entries["hmma_w4_c8"]["measured"] == 7.0 and entries["hmma_w8_c8"]["measured"] == 15.0
    assert entries["hmma_w4_c8"]["table"] == entries["hmma_w8_c8"]["table"] == 6.0
    assert all(entry["field"] == "" for entry in entries.values())
    with pytest.raises(ValueError, match="no probe measured an entry the model takes"):
        latency_table.adopt(rows, tmp_path / "table.json")


def _probe_rows(l2: float = 612.0) -> list[dict]:
    rows = [_row("load_relaxed", l2, 290.0), _row("load_acquire", l2 + 60.0, 312.0), _row("cta_barrier", 30.0, 22.0),
            _row("release_s0", 900.0, 420.0)]
    return [row | {"device_name": "NVIDIA H200"} for row in rows]


@pytest.fixture
def model_table_file(tmp_path, monkeypatch):
    """The model's measured latency table redirected to a file of the test's own (absent at first)."""
    path = tmp_path / "cost-latencies-sm_90.json"
    monkeypatch.setattr(cost, "latency_table_path", lambda arch: path)
    cost.latencies.cache_clear()
    yield path
    cost.latencies.cache_clear()


def test_adopted_entries_become_the_models_table_and_the_calibration_notices(model_table_file):
    """``--adopt`` writes the six entries the model takes; the model's table is the prior with them
    (the other entries unchanged); a calibration fitted with the prior table says it no longer fits."""
    lat = LATENCIES[90]
    calibration = Calibration("sm_90", "NVIDIA H200", {}, 1.0, 1, 0.1, 0.1)
    assert cost.latencies(90) == lat and calibration.table_mismatch(90) is None
    written = latency_table.adopt(_probe_rows(l2=290.0 + 280.0), model_table_file)  # a round trip twice the prior's
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


def test_a_measured_entry_far_from_the_prior_is_not_adopted(model_table_file, capsys):
    written = latency_table.adopt(_probe_rows(l2=290.0 + 280.0 * 9), model_table_file)  # l2 10x the prior's
    assert "l2" not in written["entries"] and "not within 8x of the prior 280" in written["rejected"]["l2"]
    with pytest.raises(ValueError, match="may set l2, store, atomic, fence, bar, membar, got 'dram'"):
        cost.measured_latencies(LATENCIES[90], {"dram": 300.0})
    empty = model_table_file.parent / "nothing.csv"
    empty.write_text(",".join(latency_probe.COLUMNS) + "\n")
    assert latency_probe.main(["--adopt", str(empty), "--table-file", str(model_table_file)]) == 1
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
