"""The per-step cost model: SASS parsing on a hand-checked fixture, register data flow, the warp
simulation on paths whose timing is known by hand, occupancy, calibration, and the model on the
committed SASS of the review's shape (LSTM H=768 -> H_PAD=1024, B=16, bf16, sm_90, cooperative).

No GPU and (except one live compile, skipped without the NVIDIA tools) no compiler is needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import torch

from rnnbench.harness.cli import main
from rnnbench.kernels import calibration, cost, sass
from rnnbench.kernels.plan import plan_recurrence

FIXTURES = Path(__file__).parent / "fixtures"
LOOP = (FIXTURES / "step_loop.sass").read_text()
REVIEW_SHAPE = (FIXTURES / "lstm_forward_cooperative_bf16_h1024_sm90.sass").read_text()


def _as_cuobjdump(text: str) -> str:
    """The fixture as ``cuobjdump -sass`` prints it: no labels, branch targets as addresses."""
    labels, pending, kept = {}, [], []
    for line in text.splitlines():
        if (label := re.match(r"(\.L\w+):", line)):
            pending.append(label.group(1))
            continue
        if (address := re.match(r"\s*/\*([0-9a-f]+)\*/", line)):
            labels.update({name: address.group(1) for name in pending})
            pending = []
        kept.append(line)
    return re.sub(r"`\((\.L\w+)\)", lambda m: f"0x{labels[m.group(1)]}", "\n".join(kept))


# ---- parsing and the step path --------------------------------------------------------------

@pytest.mark.parametrize("form", ["nvdisasm", "cuobjdump"])
def test_step_path_of_the_hand_checked_loop(form):
    text = LOOP if form == "nvdisasm" else _as_cuobjdump(LOOP)
    path = sass.step_path(sass.parse(text))
    assert path.in_loop and path.poll_loops == 1
    assert (path.instructions[0].address, path.instructions[-1].address) == (0x60, 0x250)
    assert len(path.instructions) == 32  # heaviest branch sides taken, the poll loop once
    counts = sass.count(path)
    assert counts == sass.StepCounts(
        instructions=31, mma=4, mma_chain=3, ldsm=2, lds=0, sts=1, bar=2, shfl=2, mufu=1, global_loads=3,
        global_load_bytes=36, global_loads_l2=3, global_load_l2_bytes=36, global_stores=1, global_store_bytes=16,
        atomics=1, membar=1, poll_loops=1)


def test_a_kernel_without_a_time_loop_is_one_step_to_its_exit():
    text = "\n".join(line for line in LOOP.splitlines() if "BRA `(.L_x_3)" not in line)  # no back-edge: one launch
    path = sass.step_path(sass.parse(text))
    assert not path.in_loop
    assert path.instructions[0].address == 0 and path.instructions[-1].base == "EXIT"


def test_missing_disassembler_is_reported_with_where_it_was_looked_for(monkeypatch):
    import os

    import triton

    monkeypatch.setattr(triton.knobs, "nvidia", object())  # no tool knobs: fall back to the wheel's folder
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(sass.SassUnavailable, match=r"nvdisasm not found at .*backends/nvidia/bin/nvdisasm.*TRITON_NVDISASM_PATH"):
        sass.nvidia_tool("nvdisasm")


def test_parse_refuses_text_without_instructions():
    with pytest.raises(ValueError, match="no SASS instructions"):
        sass.parse("not a disassembly")


@pytest.mark.parametrize("line, written, read", [
    ("HMMA.16816.F32.BF16 R28, R20, R24, R28 ;", ["R28", "R29", "R30", "R31"],
     ["R20", "R21", "R22", "R23", "R24", "R25", "R28", "R29", "R30", "R31"]),
    ("HMMA.1688.F32.TF32 R4, R8, R12, RZ ;", ["R4", "R5", "R6", "R7"], ["R8", "R9", "R10", "R11", "R12", "R13"]),
    ("LDG.E.128.STRONG.GPU R20, desc[UR14][R24.64+0x100] ;", ["R20", "R21", "R22", "R23"], ["UR14", "UR15", "R24", "R25"]),
    ("LDSM.16.M88.4 R32, [R84+0x80] ;", ["R32", "R33", "R34", "R35"], ["R84"]),
    ("STS.128 [R92], R20 ;", [], ["R92", "R20", "R21", "R22", "R23"]),
    ("IADD3 R18, P3, R19, 0x1, RZ ;", ["R18", "P3"], ["R19"]),
    ("ISETP.NE.U32.AND.EX P3, PT, R20, RZ, PT, P3 ;", ["P3"], ["R20", "P3"]),
    ("LOP3.LUT P5, RZ, R18, 0x1, RZ, 0xc0, !PT ;", ["P5"], ["R18"]),
    ("SHFL.BFLY PT, R61, R20, 0x4, 0x1f ;", ["R61"], ["R20"]),
    ("IMAD.WIDE.U32 R32, R19, R43, R2 ;", ["R32", "R33"], ["R19", "R43", "R2", "R3"]),
    ("REDG.E.ADD.STRONG.GPU desc[UR14][R104.64], R21 ;", [], ["UR14", "UR15", "R104", "R105", "R21"]),
    ("S2R R0, SR_TID.X ;", ["R0"], []),
])
def test_register_data_flow(line, written, read):
    (ins,) = sass.parse(f"        /*0000*/                   {line}")
    assert sass.writes(ins) == written
    assert sass.reads(ins) == read


def test_a_guard_predicate_is_read_and_an_always_false_guard_never_runs():
    guarded, never = sass.parse("/*0000*/ @!P2 LDG.E R43, desc[UR14][R34.64] ;\n/*0010*/ @!UPT UIADD3 URZ, URZ, URZ, URZ ;")
    assert "P2" in sass.reads(guarded) and not guarded.never_runs
    assert never.never_runs


def test_load_sources_follow_addresses_back_to_kernel_arguments():
    sources = sass.load_sources(sass.parse(LOOP))
    assert sources[0x30] == {0x218}  # the weak load before the loop: the argument at c[0x0][0x218]
    assert sources[0x60] == {0x220}


# ---- the warp simulation --------------------------------------------------------------------

def _path(lines: list[str], in_loop: bool = True) -> sass.StepPath:
    text = "\n".join(f"/*{16 * i:04x}*/ {line} ;" for i, line in enumerate(lines))
    return sass.StepPath(tuple(sass.parse(text)), in_loop, 0)


def _context(warps_per_scheduler: int = 1, warps_per_sm: int = 1) -> cost.WarpContext:
    return cost.WarpContext(warps_per_scheduler, warps_per_sm, 64.0, 64.0, 2048 / 6, cost.Latencies())


def test_a_loop_carried_alu_chain_costs_its_latencies():
    path = _path(["FADD R1, R3, 1", "FADD R2, R1, 1", "FADD R3, R2, 1"])
    cycles, terms = cost.simulate(path, _context())
    assert cycles == 3 * cost.Latencies().alu
    assert sum(terms.values()) == cycles and terms["issue"] == 3


def test_independent_instructions_cost_issue_slots_shared_by_the_warps_of_a_scheduler():
    path = _path([f"FADD R{i}, R20, 1" for i in range(8)])
    for warps in (1, 2, 4):
        cycles, terms = cost.simulate(path, _context(warps, 4 * warps))
        assert cycles == 8 * warps == terms["issue"]


def test_a_dependent_mma_chain_costs_its_latency_and_a_shared_tensor_core_its_turns():
    path = _path(["HMMA.16816.F32.BF16 R4, R8, R12, R4"] * 3)
    cycles, terms = cost.simulate(path, _context())
    assert cycles == pytest.approx(3 * cost.Latencies().mma) and terms["mma"] > 0
    crowded, _ = cost.simulate(_path(["HMMA.16816.F32.BF16 R4, R8, R12, RZ"] * 16), _context(8, 32))
    assert crowded == pytest.approx(16 * 8 * 6)  # 16 independent MMAs of 8 warps, 6 cycles each on one tensor core


def test_shared_memory_bandwidth_is_shared_by_every_warp_of_the_sm():
    loads = ["LDSM.16.M88.4 R8, [R0]", "FADD R1, R8, 1"]
    alone, _ = cost.simulate(_path(loads, in_loop=False), _context(1, 1))
    crowded, terms = cost.simulate(_path(loads, in_loop=False), _context(1, 8))
    assert crowded - alone == pytest.approx(7 * 4)  # 7 more warps x 512 bytes at 128 bytes per clock
    assert terms["smem"] > 0


def test_occupancy_from_registers_shared_memory_and_warps():
    device = cost.DEVICES[90]
    assert cost.occupancy(109, 98304, 8, device) == (2, "registers")  # 112 x 32 x 8 = 28,672 of 65,536
    assert cost.occupancy(156, 98304, 8, device) == (1, "registers")  # the unspecialised AOT compile
    assert cost.occupancy(40, 120000, 4, device) == (1, "shared")
    assert cost.occupancy(24, 1024, 16, device) == (4, "warps")


# ---- the review's shape ---------------------------------------------------------------------

def _review_estimate() -> dict:
    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", 132)
    registers, shared = map(int, re.search(r"registers=(\d+) shared_bytes=(\d+)", REVIEW_SHAPE).groups())
    return cost.step_estimate(REVIEW_SHAPE, plan, registers, shared, dtype=torch.bfloat16, hidden_size=768, batch=16,
                              direction="fwd")


def test_review_shape_counts_match_the_static_review():
    row = _review_estimate()
    # review: 32 HMMA in 4 chains of 8, 24 LDSM, 25 BAR.SYNC, 8 strong 128-bit loads of 32 KiB per program
    assert (row["mma"], row["mma_chain"], row["ldsm"], row["bar"]) == (32, 8, 24, 25)
    assert row["global_load_l2_bytes_per_program"] - 2 * 4 * 32 * 8 == 32 * 1024  # less the two counter polls
    assert (row["programs"], row["programs_per_sm"], row["coresident"], row["poll_loops"]) == (96, 2, True, 1)


def test_review_shape_estimate_reproduces_the_review_within_its_range():
    row = _review_estimate()
    # the review adds stage latencies: ~5,200 cycles = 3.0 us (2.5-3.5); one warp alone is that sum
    assert 2.5 <= row["latency_path_us"] <= 3.5
    # eight warps share issue slots and shared-memory bandwidth, which the stage sum leaves out
    assert row["latency_path_us"] < row["raw_us_per_step"] < 6.0
    terms = {term: row[f"t_{term}"] for term in cost.TERMS}
    assert sum(terms.values()) == pytest.approx(row["raw_us_per_step"])
    assert terms["launch"] == 0 and terms["grid_sync"] > 0.5 and terms["l2_load"] > 0.3


def test_a_cooperative_grid_that_cannot_be_co_resident_has_no_estimate():
    plan = plan_recurrence("lstm", 768, 64, torch.bfloat16, "cooperative")  # 96 x 4 programs, 2 per SM fit
    registers, shared = map(int, re.search(r"registers=(\d+) shared_bytes=(\d+)", REVIEW_SHAPE).groups())
    row = cost.step_estimate(REVIEW_SHAPE, plan, registers, shared, dtype=torch.bfloat16, hidden_size=768, batch=64,
                             direction="fwd")
    assert row["programs"] == 384 and not row["coresident"] and pd.isna(row["raw_us_per_step"])


def test_shape_rows_cover_every_goal_shape_with_one_planned_path():
    rows = pd.DataFrame(cost.shape_rows(dtypes=("bfloat16",)))
    planned = rows[rows.planned]
    assert len(planned) == len(cost.GOAL_HIDDEN) * len(cost.GOAL_BATCH) * (3 + 2)
    assert set(planned.path) == {"persistent", "cooperative", "stepwise"}
    refused = rows[~rows.plan_allows]
    assert set(refused.path) == {"cooperative"} and (refused.hidden_size * refused.batch >= 768 * 64).any()


def test_live_compile_of_one_configuration():
    """The kernels as they are now: the time loop is found and the estimate is finite."""
    from rnnbench.kernels.aot import compile_all, compile_sass

    rows = cost.shape_rows(cells=("lstm",), hidden_sizes=(256,), batches=(16,))
    shape = next(row for row in rows if row["planned"] and row["direction"] == "fwd")
    try:
        ((resources, text),) = compile_all(90, [shape["config"]], 1, job=compile_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    row = cost.step_estimate(text, shape["plan"], resources.registers, resources.shared_bytes, dtype=torch.bfloat16,
                             hidden_size=256, batch=16, direction="fwd")
    assert row["mma"] > 0 and row["poll_loops"] == 1 and 0 < row["raw_us_per_step"] < 50


# ---- calibration ----------------------------------------------------------------------------

def _synthetic_table() -> pd.DataFrame:
    rows = []
    for hidden in (64, 128, 256, 512):
        for direction in ("fwd", "fwd_train", "bwd"):
            terms = dict.fromkeys(cost.TERMS, 0.0)
            terms["mma"], terms["grid_sync"] = hidden / 256, 1.0 + (direction == "bwd")
            rows.append({"cell": "lstm", "dtype": "bfloat16", "hidden_size": hidden, "batch": 16, "direction": direction,
                         "path": "cooperative", "planned": True, **{f"t_{t}": v for t, v in terms.items()},
                         "raw_us_per_step": sum(terms.values())})
    table = pd.DataFrame(rows)
    return table.assign(est_us_per_step=table.raw_us_per_step)


def _results_csv(tmp_path, table, mma_factor, sync_factor) -> Path:
    rows = []
    for (hidden, mode), directions in [((h, m), d) for h in table.hidden_size.unique() for m, d in calibration.MODE_DIRECTIONS.items()]:
        part = table[(table.hidden_size == hidden) & table.direction.isin(directions)]
        us = mma_factor * part.t_mma.sum() + sync_factor * part.t_grid_sync.sum()
        rows.append({"experiment": "speed", "metric": "latency", "backend": "triton", "status": "ok", "family": "lstm",
                     "dtype": "bfloat16", "hidden_size": hidden, "batch": 16, "seq_len": 1024, "mode": mode,
                     "value": us * 1024 / 1000, "device_name": "NVIDIA H100 80GB HBM3"})
    rows.append({**rows[0], "backend": "torch", "value": 1.0})  # other backends are ignored
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_calibration_recovers_per_term_factors_and_round_trips(tmp_path):
    table = _synthetic_table()
    fitted, compared = calibration.fit(table, _results_csv(tmp_path, table, 2.0, 0.5), "sm_90")
    assert fitted.scales["mma"] == pytest.approx(2.0, rel=0.05) and fitted.scales["grid_sync"] == pytest.approx(0.5, rel=0.05)
    assert fitted.scales["issue"] == 1.0  # no data: the prior stays
    assert fitted.median_rel_error_calibrated < 0.05 < fitted.median_rel_error_raw
    assert fitted.rows == len(compared) == 8 and fitted.device_name == "NVIDIA H100 80GB HBM3"
    fitted.save(tmp_path / "calibration.json")
    again = calibration.Calibration.load(tmp_path / "calibration.json")
    assert again == fitted
    applied = again.apply(table)
    assert applied.est_us_per_step.iloc[0] == pytest.approx(2.0 * table.t_mma.iloc[0] + 0.5 * table.t_grid_sync.iloc[0], rel=0.05)


def test_a_training_step_of_the_rnn_adds_its_one_forward_kernel_to_its_backward():
    assert calibration.mode_directions("fwd_bwd", "rnn") == ("fwd", "bwd")
    assert calibration.mode_directions("fwd_bwd", "lstm") == ("fwd_train", "bwd")
    table = _synthetic_table().assign(cell="rnn")
    table = table[table.direction != "fwd_train"]
    measured = pd.DataFrame({"cell": "rnn", "dtype": "bfloat16", "hidden_size": 64, "batch": 16, "mode": ["fwd", "fwd_bwd"],
                             "measured_us_per_step": 1.0, "device_name": ""})
    compared = calibration.comparison(table, measured).set_index("mode")
    shape = table[table.hidden_size == 64].set_index("direction").raw_us_per_step
    assert compared.raw_us_per_step["fwd"] == pytest.approx(shape["fwd"])
    assert compared.raw_us_per_step["fwd_bwd"] == pytest.approx(shape["fwd"] + shape["bwd"])


def test_calibration_refuses_a_file_that_is_not_a_results_csv(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lacks columns"):
        calibration.fit(_synthetic_table(), path, "sm_90")


def test_calibration_refuses_unknown_terms(tmp_path):
    table = _synthetic_table()
    fitted, _ = calibration.fit(table, _results_csv(tmp_path, table, 1.0, 1.0), "sm_90")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**asdict(fitted), "scales": {"warp_drive": 2.0}}))
    with pytest.raises(ValueError, match="unknown terms"):
        calibration.Calibration.load(path)


# ---- the command ----------------------------------------------------------------------------

def test_cost_command_prints_the_table_and_writes_a_calibration(tmp_path, monkeypatch, capsys):
    table = _synthetic_table().assign(target="sm_90", coresident=True, programs=8, programs_per_sm=2, registers=90,
                                      instructions=500, mma=8, mma_chain=2, ldsm=9, bar=20, shfl=40,
                                      global_load_bytes_per_program=8192)
    monkeypatch.setattr(cost, "cost_table", lambda *args, calibration=None, **kwargs: table if calibration is None
                        else calibration.apply(table))
    assert main(["kernels", "--cost", "--dtypes", "bfloat16"]) == 0
    assert "est_us_per_step" in capsys.readouterr().out
    results = _results_csv(tmp_path, table, 2.0, 1.0)
    out = tmp_path / "calibration.json"
    assert main(["kernels", "--cost", "--calibrate", str(results), "--calibration", str(out)]) == 0
    assert calibration.Calibration.load(out).scales["mma"] == pytest.approx(2.0, rel=0.05)
    assert (tmp_path / "cost-vs-measured.csv").is_file()
    assert main(["kernels", "--cost", "--calibration", str(out)]) == 0
    assert "calibrated by" in capsys.readouterr().err


def test_cost_command_refuses_an_unknown_dtype(capsys):
    assert main(["kernels", "--cost", "--dtypes", "float64"]) == 2
    assert "dtype must be one of" in capsys.readouterr().err
