"""The per-step cost model: SASS parsing on a hand-checked fixture, register data flow, the warp
simulation on paths whose timing is known by hand, calibration, and the model on the
committed SASS of the review's shape (LSTM H=768 -> H_PAD=1024, B=16, bf16, sm_90, cooperative).

No GPU and (except one live compile, skipped without the NVIDIA tools) no compiler is needed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnbench.harness.cli import main
from rnnbench.kernels import calibration, cost, sass
from rnnbench.kernels.plan import Plan, gluon_tagged_exchange, narrow_batch_blocks, prefers_gluon

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


def test_a_paths_sleep_is_the_sum_of_its_nanosleeps():
    """``NANOSLEEP`` immediates on a path (the tagged loader's poll delay), in nanoseconds, those
    the scheduler never runs (``@!PT``) left out; a path without one sleeps 0."""
    text = "\n".join(["        /*0000*/                   NANOSLEEP 0xc8 ;",
                      "        /*0010*/                   IADD3 R1, R1, 0x1, RZ ;",
                      "        /*0020*/              @!PT NANOSLEEP 0x64 ;",
                      "        /*0030*/                   NANOSLEEP 0x32 ;",
                      "        /*0040*/                   EXIT ;"])
    path = sass.step_path(sass.parse(text))
    assert sass.sleep_ns(path) == 250
    assert sass.sleep_ns(sass.step_path(sass.parse(LOOP))) == 0


def test_a_kernel_without_a_time_loop_is_one_step_to_its_exit():
    text = "\n".join(line for line in LOOP.splitlines() if "BRA `(.L_x_3)" not in line)  # no back-edge: one launch
    path = sass.step_path(sass.parse(text))
    assert not path.in_loop
    assert path.instructions[0].address == 0 and path.instructions[-1].base == "EXIT"


def test_the_step_of_a_warp_specialised_kernel_is_the_partition_that_stores_its_output():
    """A warp-specialised kernel (the Gluon forward with its input projection fused) has a time
    loop with MMAs per partition, and a loop around the partitions' dispatch that contains the
    producer's: the step is the recurrence's loop, the one that stores to global memory, even
    where another MMA loop spans more instructions."""
    lines = ["MOV R1, RZ"]  # a dispatch loop around the producer's loop (MMAs, shared-memory stores only)
    lines += [".L_x_0:", "MOV R2, RZ", ".L_x_1:"] + ["HGMMA.64x16x16.F32.BF16 R24, gdesc[UR8], R24"] * 6
    lines += ["STS [R3], R24", "@P0 BRA `(.L_x_1)", "@P1 BRA `(.L_x_0)"]
    lines += [".L_x_2:", "HGMMA.64x16x16.F32.BF16 R24, gdesc[UR8], R24", "STG.E desc[UR4][R4.64], R24",
              "@P2 BRA `(.L_x_2)", "EXIT"]
    text, address = [], 0
    for line in lines:
        if line.startswith(".L"):
            text.append(line)
        else:
            text.append(f"        /*{address:04x}*/ {line} ;")
            address += 16
    path = sass.step_path(sass.parse("\n".join(text)))
    assert path.in_loop and [ins.base for ins in path.instructions] == ["HGMMA", "STG", "BRA"]


def test_mbarrier_waits_beyond_the_steps_copies_are_handoffs_from_another_warpgroup():
    """The first waits of a step match its TMA copies, in order; a wait beyond them (the fused input
    projection's products) waits for nothing the step issued: a shared-memory poll, not a copy."""
    classes = ["tma_load", "tma_load", "tma_wait", "mma", "tma_wait", "mma", "tma_wait", "alu"]
    assert cost._handoffs(classes) == classes[:6] + ["handoff_wait", "alu"]
    assert cost._handoffs(["tma_wait"]) == ["handoff_wait"]


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
    # warpgroup MMA, 64x16 float32 accumulator over 128 threads: 8 registers; B (and here A) by descriptor
    ("HGMMA.64x16x16.F32.BF16 R24, gdesc[UR20], R24, gsb0 ;", [f"R{r}" for r in range(24, 32)],
     ["UR20", "UR21"] + [f"R{r}" for r in range(24, 32)]),
    ("HGMMA.64x16x16.F32.BF16 R24, gdesc[UR20], RZ, !UPT ;", [f"R{r}" for r in range(24, 32)], ["UR20", "UR21"]),
    ("HGMMA.64x32x16.F32.BF16 R24, R4, gdesc[UR8], R24 ;", [f"R{r}" for r in range(24, 40)],
     ["R4", "R5", "R6", "R7", "UR8", "UR9"] + [f"R{r}" for r in range(24, 40)]),
    ("UTMALDG.2D [UR24], [UR30] ;", [], ["UR24", "UR30"]),
    ("SYNCS.PHASECHK.TRANS64.TRYWAIT P3, [UR12+0x1f800], R94 ;", ["P3"], ["UR12", "R94"]),
])
def test_register_data_flow(line, written, read):
    (ins,) = sass.parse(f"        /*0000*/                   {line}")
    assert sass.writes(ins) == written
    assert sass.reads(ins) == read


#: a TMA wait in a time loop (Gluon's SASS): when the wait fails, the kernel detours to a retry block
#: at the end of the code that jumps back to just after the detour; that back edge is not a loop.
#: The compilers also place the time loop's own back edge after the EXIT (``latch_after_exit``).
DETOUR_LOOP = """
        /*0000*/                   MOV R6, RZ ;
.L_x_0:
        /*0010*/                   UTMALDG.2D [UR24], [UR30] ;
        /*0020*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P3, [UR12+0x1f800], R94 ;
        /*0030*/              @!P3 BRA `(.L_x_2) ;
.L_x_1:
        /*0040*/                   HGMMA.64x16x16.F32.BF16 R24, gdesc[UR20], R24, gsb0 ;
        /*0050*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
        /*0060*/                   IADD3 R6, R6, 0x1, RZ ;
        /*0070*/                   ISETP.NE.AND P0, PT, R6, 0x8, PT ;
        /*0080*/               @P0 BRA `(.L_x_0) ;
        /*0090*/                   EXIT ;
.L_x_2:
        /*00a0*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P3, [UR12+0x1f800], R94 ;
        /*00b0*/              @!P3 BRA `(.L_x_2) ;
        /*00c0*/                   BRA `(.L_x_1) ;
"""


@pytest.mark.parametrize("latch_after_exit", [False, True])
def test_out_of_line_retry_blocks_are_not_loops(latch_after_exit):
    text, step = DETOUR_LOOP, list(range(0x10, 0x90, 0x10))
    if latch_after_exit:  # the loop's back edge in a block after the EXIT, reached by a forward branch
        text = text.replace("@P0 BRA `(.L_x_0) ;", "@P0 BRA `(.L_x_4) ;").replace(
            "EXIT ;\n", "EXIT ;\n.L_x_4:\n        /*0098*/                   BRA `(.L_x_0) ;\n")
        step.append(0x98)
    for form in (text, _as_cuobjdump(text)):
        path = sass.step_path(sass.parse(form))
        assert path.in_loop
        assert [ins.address for ins in path.instructions] == step
        assert sass.count(path).tma_loads == 1


#: a time loop whose grid-barrier poll sits behind ``BRA.DIV`` (ptxas 3.6 emits one before a poll
#: whose warp-uniform reductions need a converged warp): the divergent copy of the poll is out of
#: line after the EXIT and jumps back into the loop
DIVERGENT_POLL = """
        /*0000*/                   MOV R6, RZ ;
.L_x_0:
        /*0010*/                   HMMA.16816.F32.BF16 R24, R4, R8, R24 ;
        /*0020*/              @!P1 BRA `(.L_x_2) ;
        /*0030*/                   BRA.DIV UR8, `(.L_x_3) ;
.L_x_1:
        /*0040*/                   LDG.E.STRONG.GPU R10, desc[UR14][R2.64] ;
        /*0050*/                   ISETP.GE.AND P5, PT, R10, R6, PT ;
        /*0060*/              @!P5 BRA `(.L_x_1) ;
.L_x_2:
        /*0070*/                   IADD3 R6, R6, 0x1, RZ ;
        /*0080*/                   ISETP.NE.AND P0, PT, R6, 0x8, PT ;
        /*0090*/               @P0 BRA `(.L_x_0) ;
        /*00a0*/                   EXIT ;
.L_x_3:
        /*00b0*/                   LDG.E.STRONG.GPU R10, desc[UR14][R2.64] ;
        /*00c0*/                   BRA `(.L_x_2) ;
"""


def test_a_poll_behind_a_divergence_branch_is_on_the_step_path():
    for form in (DIVERGENT_POLL, _as_cuobjdump(DIVERGENT_POLL)):
        path = sass.step_path(sass.parse(form))
        assert [ins.address for ins in path.instructions] == list(range(0x10, 0xa0, 0x10))
        assert path.poll_loops == 1 and sass.count(path).global_loads_l2 == 1


#: a time loop with a register spilled before it and reloaded after it (Triton 3.6's final-state
#: address at the 255-register cap) and, in the second form, one reloaded inside it
SPILL_AROUND_THE_LOOP = """
        /*0000*/                   STL [R1], R44 ;
.L_x_0:
        /*0010*/                   HMMA.16816.F32.BF16 R24, R4, R8, R24 ;
        /*0020*/                   IADD3 R6, R6, 0x1, RZ ;
        /*0030*/                   ISETP.NE.AND P0, PT, R6, 0x8, PT ;
        /*0040*/               @P0 BRA `(.L_x_0) ;
        /*0050*/                   LDL.LU R16, [R1] ;
        /*0060*/                   STG.E.64 desc[UR8][R2.64], R16 ;
        /*0070*/                   EXIT ;
"""


def test_only_spill_accesses_on_the_step_path_count():
    for form in (SPILL_AROUND_THE_LOOP, _as_cuobjdump(SPILL_AROUND_THE_LOOP)):
        assert sass.local_accesses(sass.step_path(sass.parse(form))) == 0
    inside = SPILL_AROUND_THE_LOOP.replace("IADD3 R6, R6, 0x1, RZ", "LDL R7, [R1]")
    assert sass.local_accesses(sass.step_path(sass.parse(inside))) == 1
    no_loop = SPILL_AROUND_THE_LOOP.replace("@P0 BRA `(.L_x_0)", "NOP")  # one launch per step: all of it
    assert sass.local_accesses(sass.step_path(sass.parse(no_loop))) == 2


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


def test_an_mbarrier_wait_waits_for_its_tma_copy_and_warpgroup_mmas_chain_in_the_tensor_pipe():
    lat = cost.Latencies()
    box = 2048  # bytes per copy, at the context's 64 bytes per clock: 32 cycles each
    context = dataclasses.replace(_context(), tma_box_bytes=box)
    copies = ["UTMALDG.2D [UR24], [UR30]", "UTMALDG.2D [UR28], [UR30]"]
    waits = ["SYNCS.PHASECHK.TRANS64.TRYWAIT P3, [UR12+0x1f800], R94", "@!P3 BRA 0x1000"]
    mmas = ["HGMMA.64x16x16.F32.BF16 R24, gdesc[UR20], R24"] * 4
    tail = ["WARPGROUP.DEPBAR.LE gsb0, 0x0", "FADD R40, R24, 1"]
    trace: list = []
    cycles, terms = cost.simulate(_path(copies + waits + mmas + waits + mmas + tail, in_loop=False), context, trace=trace)
    issue = {position: at for position, (_, at, _) in enumerate(trace)}
    first_copy_lands = issue[0] + lat.l2 + box / 64
    assert issue[3] == pytest.approx(first_copy_lands)  # the branch on the wait's predicate
    mma = cost._mma_cycles(sass.parse("/*0000*/ HGMMA.64x16x16.F32.BF16 R24, gdesc[UR20], R24 ;")[0], 2048 / 6)
    assert [issue[i + 1] - issue[i] for i in range(4, 7)] == [pytest.approx(mma)] * 3  # no 128-cycle latency each
    # the FADD reads the accumulator after the last MMA's latency, not 8 chained latencies
    assert issue[len(trace) - 1] - issue[len(trace) - 3] < 2 * lat.hgmma + 16 * mma
    assert terms["l2_load"] > 0 and terms["mma"] > 0


def test_an_mbarrier_is_named_by_the_offset_in_its_shared_address():
    wait, arrive, plain, fma = sass.parse(
        "/*0000*/ SYNCS.PHASECHK.TRANS64.TRYWAIT P2, [UR8+0x13900], R8 ;\n"
        "/*0010*/ SYNCS.ARRIVE.TRANS64.A1T0 RZ, [R12+URZ+0x13900], RZ ;\n"
        "/*0020*/ SYNCS.ARRIVE.TRANS64.A1T0 RZ, [UR8], RZ ;\n/*0030*/ FADD R1, R2, 1 ;")
    assert cost.mbarrier_offset(wait) == cost.mbarrier_offset(arrive) == 0x13900
    assert cost.mbarrier_offset(plain) == 0 and cost.mbarrier_offset(fma) is None


#: a recurrence's step: wait for the loader's tiles (0x100), compute, arrive on ``h_free`` (0x110),
#: then work of its own that the loader's step overlaps
HANDOFF_STEP = ["SYNCS.PHASECHK.TRANS64.TRYWAIT P2, [UR8+0x100], R8", "@!P2 BRA 0x1000",
                "FADD R1, R2, 1", "FADD R2, R1, 1", "SYNCS.ARRIVE.TRANS64.A1T0 RZ, [UR8+0x110], RZ",
                "FADD R5, R6, 1", "FADD R6, R5, 1", "FADD R5, R6, 1"]


def test_a_handoff_wait_waits_for_the_loader_after_the_recurrences_arrival():
    """The step is the loader's cycles from the recurrence's arrival to its own, plus the
    recurrence's work from the wait to its arrival: the work after the arrival overlaps the loader
    and costs nothing, and the wait beyond its own poll is the ``loader`` term."""
    lat = cost.Latencies()
    alone, alone_terms = cost.simulate(_path(HANDOFF_STEP), _context())
    assert alone_terms["loader"] == 0 and alone < 200
    loader = cost.Handoff(after=0x110, arrives=0x100, cycles=1000.0)
    trace: list = []
    cycles, terms = cost.simulate(_path(HANDOFF_STEP), _context(), handoffs=(loader,), trace=trace)
    issue = [at for _, at, _ in trace]
    assert cycles == pytest.approx(1000 + lat.lds + (issue[4] - issue[1]))
    assert cycles < 1000 + alone  # not added to the whole step
    # the branch on the wait's predicate waits for the loader, less the recurrence's work after its arrival
    assert trace[1][2] == "loader" and terms["loader"] == issue[1] - issue[0] - 1
    assert terms["loader"] == pytest.approx(1000 + lat.lds - (cycles - (issue[4] - issue[0])), abs=1)
    # a handoff on an mbarrier the step does not wait on, or after an arrival it does not make, is inert
    for other in (cost.Handoff(0x110, 0x120, 1000.0), cost.Handoff(0x120, 0x100, 1000.0)):
        assert cost.simulate(_path(HANDOFF_STEP), _context(), handoffs=(other,))[0] == alone


def test_the_loaders_handoff_runs_from_its_wait_for_the_recurrence_to_its_arrival():
    lat = cost.Latencies()
    loader = _path(["BAR.SYNC.DEFER_BLOCKING 0x2, 0x80", "SYNCS.PHASECHK.TRANS64.TRYWAIT P6, [R12+URZ+0x110], R9",
                    "@!P6 BRA 0x2000", "LDG.E.128.STRONG.SYS R16, desc[UR4][R8.64]", "STS.128 [R3], R16",
                    "SYNCS.ARRIVE.TRANS64.A1T0 RZ, [R12+URZ+0x100], RZ"])
    (handoff,) = cost.loader_handoffs(_path(HANDOFF_STEP), loader, _context(), unseen_cycles=50.0)
    assert (handoff.after, handoff.arrives) == (0x110, 0x100)
    # the poll of the wait, the load's round trip and the store before the arrival, and the unseen 50;
    # not the barrier before the wait
    assert handoff.cycles == pytest.approx(lat.lds + lat.l2 + 50, abs=4 * lat.alu)
    elsewhere = [line.replace("0x110", "0x120") for line in HANDOFF_STEP]
    with pytest.raises(ValueError, match=r"waits on none of the mbarriers.*\['0x120'\]"):
        cost.loader_handoffs(_path(elsewhere), loader, _context(), 0.0)


def test_a_cp_async_wait_waits_for_every_copy_before_it():
    copies = ["LDGSTS.E [R6+0x1f000], desc[UR6][R24.64], P5", "LDGDEPBAR"]
    cycles, terms = cost.simulate(_path(copies + ["DEPBAR.LE SB0, 0x0", "FADD R1, R2, 1"], in_loop=False), _context())
    assert cycles >= cost.Latencies().dram and terms["dram_load"] > 0


def test_acquire_loads_follow_one_another_and_relaxed_ones_overlap():
    """An acquire (LDG.STRONG then CCTL.IVALL) waits for its load before the next load issues; the
    relaxed poll issues its loads together and its one fence after them waits for nothing."""
    flags = [f"LDG.E.STRONG.GPU R{10 + i}, desc[UR4][R2.64+0x{4 * i:x}]" for i in range(5)]
    use = ["IMNMX R20, R10, R11, PT", "IMNMX R20, R20, R12, PT", "IMNMX R20, R20, R13, PT", "IMNMX R20, R20, R14, PT"]
    acquire = [line for load in flags for line in (load, "CCTL.IVALL")]
    relaxed = flags + use + ["MEMBAR.ALL.GPU", "ERRBAR", "CCTL.IVALL"]
    l2 = cost.Latencies().l2
    chained, terms = cost.simulate(_path(acquire + use, in_loop=False), _context())
    overlapped, _ = cost.simulate(_path(relaxed, in_loop=False), _context())
    assert chained >= 5 * l2 and terms["grid_sync"] >= 4 * l2
    assert l2 <= overlapped < 2 * l2


def test_shared_memory_bandwidth_is_shared_by_every_warp_of_the_sm():
    loads = ["LDSM.16.M88.4 R8, [R0]", "FADD R1, R8, 1"]
    alone, _ = cost.simulate(_path(loads, in_loop=False), _context(1, 1))
    crowded, terms = cost.simulate(_path(loads, in_loop=False), _context(1, 8))
    assert crowded - alone == pytest.approx(7 * 4)  # 7 more warps x 512 bytes at 128 bytes per clock
    assert terms["smem"] > 0


# ---- the review's shape ---------------------------------------------------------------------

#: the layout the fixture was compiled with (the first kernels: H padded to 1024, 8 warps)
REVIEW_PLAN = Plan("lstm", "cooperative", block_b=16, block_h=8, h_pad=1024, k_split=8, num_warps=8, grid=(96, 1))


def _review_estimate(latency_table=None) -> dict:
    plan = REVIEW_PLAN
    registers, shared = map(int, re.search(r"registers=(\d+) shared_bytes=(\d+)", REVIEW_SHAPE).groups())
    return cost.step_estimate(REVIEW_SHAPE, plan, registers, shared, dtype=torch.bfloat16, hidden_size=768, batch=16,
                              direction="fwd", latency_table=latency_table)


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


def test_a_what_if_table_moves_the_terms_it_touches():
    """``latency_table``: doubling the L2 round trips lengthens the grid synchronisation and the
    state's loads, and leaves the MMAs and the issue slots about alone (a wait's cycles may fall to
    another term once the loads end later); the model's own table is the prior's with the entries the
    H200's latency probes measured (``reports/aot/cost-latencies-sm_90.json``, committed)."""
    registers, shared = map(int, re.search(r"registers=(\d+) shared_bytes=(\d+)", REVIEW_SHAPE).groups())
    prior = cost.LATENCIES[90]
    doubled = dataclasses.replace(prior, l2=2 * prior.l2, store=2 * prior.store, atomic=2 * prior.atomic)
    base, longer = (cost.step_estimate(REVIEW_SHAPE, REVIEW_PLAN, registers, shared, dtype=torch.bfloat16,
                                       hidden_size=768, batch=16, direction="fwd", latency_table=table)
                    for table in (prior, doubled))
    measured = json.loads(cost.latency_table_path(90).read_text())["entries"]
    assert cost.latencies(90) == dataclasses.replace(prior, **measured) != prior
    assert cost.latencies(90).membar > 1.5 * prior.membar  # the release's fence: 198 cycles against 100
    assert base == _review_estimate(prior)
    assert longer["t_grid_sync"] > base["t_grid_sync"] and longer["t_l2_load"] > base["t_l2_load"]
    assert longer["t_mma"] == pytest.approx(base["t_mma"], rel=0.05)
    assert longer["t_issue"] == pytest.approx(base["t_issue"], rel=0.05)


def test_bank_conflicts_spread_their_extra_wavefronts_over_the_step_s_ldmatrix_loads():
    """``ldsm_extra_wavefronts`` (from the TTGIR, which the SASS does not show): 24 ``LDSM.x4`` a warp,
    8 warps, 768 matrices; 7 extra wavefronts each (8-way conflicts) make every matrix take 8, which
    shared memory serves one a cycle: the shared-memory time of the step grows by about 5376 cycles
    where those loads are on its critical path, and nothing else moves."""
    registers, shared = map(int, re.search(r"registers=(\d+) shared_bytes=(\d+)", REVIEW_SHAPE).groups())
    clean, conflicted = (cost.step_estimate(REVIEW_SHAPE, REVIEW_PLAN, registers, shared, dtype=torch.bfloat16,
                                            hidden_size=768, batch=16, direction="fwd", ldsm_extra_wavefronts=extra)
                         for extra in (0.0, 7 * 768))
    assert clean == _review_estimate() and clean["ldsm_wavefronts"] == 1.0
    assert conflicted["ldsm_wavefronts"] == pytest.approx(8.0)
    added_us = conflicted["raw_us_per_step"] - clean["raw_us_per_step"]
    assert 0.5 * 7 * 768 / (1e3 * cost.DEVICES[90].clock_ghz) < added_us <= 7 * 768 / (1e3 * cost.DEVICES[90].clock_ghz)
    assert conflicted["t_smem"] - clean["t_smem"] > 0.5 * added_us
    assert conflicted["t_l2_load"] == pytest.approx(clean["t_l2_load"], rel=0.1)


def test_a_cooperative_grid_that_cannot_be_co_resident_has_no_estimate():
    plan = dataclasses.replace(REVIEW_PLAN, grid=(96, 4))  # 96 x 4 programs, 2 per SM fit
    registers, shared = map(int, re.search(r"registers=(\d+) shared_bytes=(\d+)", REVIEW_SHAPE).groups())
    row = cost.step_estimate(REVIEW_SHAPE, plan, registers, shared, dtype=torch.bfloat16, hidden_size=768, batch=64,
                             direction="fwd")
    assert row["programs"] == 384 and not row["coresident"] and pd.isna(row["raw_us_per_step"])


def test_shape_rows_cover_every_goal_shape_with_one_planned_path():
    rows = pd.DataFrame(cost.shape_rows(dtypes=("bfloat16",)))
    planned = rows[rows.planned]
    assert len(planned) == len(cost.GOAL_HIDDEN) * len(cost.GOAL_BATCH) * (3 + 2)
    assert set(planned.path) == {"persistent", "cooperative", "stepwise", "gluon"}
    gluon = rows[rows.path == "gluon"]  # the LSTM at H >= 256 on sm_90, the forward planned where prefers_gluon
    assert set(gluon.cell) == {"lstm"} and set(gluon.direction) == {"fwd", "fwd_train", "bwd"}
    assert gluon.hidden_size.min() == 256 and {768} <= set(gluon[gluon.batch == 16].hidden_size)
    forward, backward = gluon[gluon.direction != "bwd"], gluon[gluon.direction == "bwd"]
    # the Gluon forward also with its input projection fused, where it fits (H <= 768, 16-row blocks;
    # never planned while GLUON_FUSED_INPUT is off)
    fused = forward[[row.input_tiles > 0 for row in forward.plan]]
    assert set(fused.hidden_size) == {256, 512, 768} and not fused.planned.any()
    assert all(row.block_b == 16 and row.input_tiles == row.h_pad // 64 for row in fused.plan)
    forward = forward[[row.input_tiles == 0 for row in forward.plan]]
    # where prefers_gluon, and in inference also where the Gluon forward exchanges tagged words (H=256,
    # where the plain kernel runs the B <= 16 layout: H200, kernel alone, B=16 1.47 against 1.82 µs, B=64
    # 1.73 against 1.85)
    sms = cost.DEVICES[90].sms
    expected = [prefers_gluon("lstm", h, b, torch.bfloat16, narrow_batch_blocks("lstm", h, b, torch.bfloat16, sms))
                or (direction == "fwd" and gluon_tagged_exchange(plan, sms))
                for h, b, direction, plan in zip(forward.hidden_size, forward.batch, forward.direction, forward.plan)]
    assert (forward.planned == expected).all()
    taken_for_tagged = forward[forward.planned & ~pd.Series(
        [prefers_gluon("lstm", h, b, torch.bfloat16, narrow_batch_blocks("lstm", h, b, torch.bfloat16, sms))
         for h, b in zip(forward.hidden_size, forward.batch)], index=forward.index)]
    assert set(zip(taken_for_tagged.hidden_size, taken_for_tagged.batch, taken_for_tagged.direction)) == {
        (256, 1, "fwd"), (256, 16, "fwd"), (256, 64, "fwd")}
    assert backward.planned.all()  # auto runs the Gluon backward wherever it plans one (prefers_gluon_backward)
    assert all(row["plan"].path == "gluon" for _, row in backward.iterrows())  # never the plain fallback
    refused = rows[~rows.plan_allows]
    assert set(refused.path) == {"cooperative"} and (refused.batch > 64).all()


def test_live_compile_of_one_configuration():
    """The kernels as they are now: the time loop is found and the estimate is finite (the planned
    inference forward at H=256 B=16: the Gluon one exchanging tagged words, whose loader's wait is no
    poll of flags)."""
    from rnnbench.kernels.aot import compile_all, compile_sass

    rows = cost.shape_rows(cells=("lstm",), hidden_sizes=(256,), batches=(16,))
    shape = next(row for row in rows if row["planned"] and row["direction"] == "fwd")
    try:
        ((resources, text),) = compile_all(90, [shape["config"]], 1, job=compile_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    row = cost.step_estimate(text, shape["plan"], resources.registers, resources.shared_bytes, dtype=torch.bfloat16,
                             hidden_size=256, batch=16, direction="fwd")
    assert shape["path"] == "gluon" and row["tagged_exchange"]
    assert row["mma"] > 0 and row["poll_loops"] == 0 and 0 < row["raw_us_per_step"] < 50
    # the loader's arrival is found and waited for: the recurrence's step waits on what it arrives on
    steps = sass.step_path(sass.parse(text))
    (handoff,) = cost.loader_handoffs(steps, sass.loader_path(sass.parse(text)), _context(), 0.0)
    waits = {cost.mbarrier_offset(ins) for ins in steps.instructions if "TRYWAIT" in ins.modifiers}
    assert handoff.arrives in waits and 0.1 < row["t_loader"] < row["raw_us_per_step"]


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


def test_calibration_recovers_per_term_factors_and_round_trips(tmp_path, monkeypatch):
    from rnnbench.kernels import switches

    monkeypatch.setenv(switches.TILES_PER_COPY_ENV, "8")  # the fit records what the estimates were of
    monkeypatch.delenv(switches.LOCAL_GATES_ENV, raising=False)
    table = _synthetic_table()
    fitted, compared = calibration.fit(table, _results_csv(tmp_path, table, 2.0, 0.5), "sm_90")
    assert fitted.scales["mma"] == pytest.approx(2.0, rel=0.05) and fitted.scales["grid_sync"] == pytest.approx(0.5, rel=0.05)
    assert fitted.scales["issue"] == 1.0  # no data: the prior stays
    assert fitted.median_rel_error_calibrated < 0.05 < fitted.median_rel_error_raw
    assert fitted.rows == len(compared) == 8 and fitted.device_name == "NVIDIA H100 80GB HBM3"
    # every shape has both terms, so a kernel left out is estimated right by the others' factors
    assert fitted.ridge == calibration.RIDGE and fitted.median_rel_error_held_out < 0.05
    assert compared.held_out_us_per_step.to_numpy() == pytest.approx(compared.measured_us_per_step.to_numpy(), rel=0.05)
    assert fitted.pair_agreement == {"pairs": 0}  # no step ablation: no pairs of variants to order
    assert fitted.environment[switches.TILES_PER_COPY_ENV] == "8" and switches.LOCAL_GATES_ENV not in fitted.environment
    fitted.save(tmp_path / "calibration.json")
    again = calibration.Calibration.load(tmp_path / "calibration.json")
    assert again == fitted
    applied = again.apply(table)
    assert applied.est_us_per_step.iloc[0] == pytest.approx(2.0 * table.t_mma.iloc[0] + 0.5 * table.t_grid_sync.iloc[0], rel=0.05)


def test_the_factors_are_the_minimum_within_their_bounds_not_the_unbounded_minimum_clipped():
    """Two rows, ``s1 + s2 = 1`` and ``s2 = 2``, factors in [0, 10]: the unbounded minimum is
    (-1, 2), clipped (0, 2) (squared error 1); within the bounds the best is s1 = 0 and s2 halfway
    between the rows' wishes, (0, 1.5) (squared error 0.5)."""
    design, target = [[1.0, 1.0], [0.0, 1.0]], [1.0, 2.0]
    assert calibration.bounded_least_squares(design, target, 0.0, 10.0) == pytest.approx([0.0, 1.5], abs=1e-9)
    # inside the bounds it is the ordinary least-squares solution
    assert calibration.bounded_least_squares(design, target, -5.0, 10.0) == pytest.approx([-1.0, 2.0], abs=1e-9)


def test_bounded_least_squares_matches_scipy_on_random_problems():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(7)
    for _ in range(50):
        columns = int(rng.integers(2, 9))
        design = rng.normal(size=(int(rng.integers(columns, 40)), columns)) * rng.uniform(0.01, 10.0, size=columns)
        target = 5 * rng.normal(size=len(design))
        low, high = -float(rng.uniform(0, 1)), float(rng.uniform(0, 1))
        ours = calibration.bounded_least_squares(design, target, low, high)
        theirs = optimize.lsq_linear(design, target, bounds=(low, high), tol=1e-14).x
        squared_error = lambda factors: float(np.sum((design @ factors - target) ** 2))  # noqa: E731
        assert low <= ours.min() and ours.max() <= high
        assert squared_error(ours) <= squared_error(theirs) * (1 + 1e-9) + 1e-12


def _pair_rows(measured, estimate, shape=(768, 16)):
    return pd.DataFrame({"cell": "lstm", "dtype": "bfloat16", "hidden_size": shape[0], "batch": shape[1],
                         "mode": "ablation", "path": [f"v{i}" for i in range(len(measured))],
                         "measured_us_per_step": measured, "estimate": estimate})


def test_pair_agreement_counts_the_measured_apart_pairs_of_one_shape_put_in_the_measured_order():
    # v0 < v1 < v2 measured; v1 and v2 are 1 % apart (noise): the pairs (v0, v1) and (v0, v2) count
    rows = _pair_rows([1.0, 2.0, 2.02], [1.0, 3.0, 2.0])
    assert calibration.pair_agreement(rows, rows.estimate) == (1.0, 2)
    assert calibration.pair_agreement(rows, [3.0, 2.0, 1.0]) == (0.0, 2)
    # a pair of two shapes is no pair; the suite's rows are no ablation's
    other = _pair_rows([5.0], [0.1], shape=(512, 16))
    suite = _pair_rows([0.5], [9.0]).assign(mode="fwd")
    rows = pd.concat([rows, other, suite], ignore_index=True)
    assert calibration.pair_agreement(rows, rows.estimate) == (1.0, 2)
    share, pairs = calibration.pair_agreement(suite, suite.estimate)
    assert pairs == 0 and np.isnan(share)


def test_the_pair_table_puts_the_held_out_estimates_wrong_orders_first_widest_gap_first():
    rows = _pair_rows([1.0, 2.0, 4.0], None).assign(
        raw_us_per_step=[1.0, 2.0, 3.0], calibrated_us_per_step=[2.0, 1.0, 3.0], held_out_us_per_step=[3.0, 2.0, 1.0])
    table = calibration.pair_table(rows)
    # held out, every pair is in the wrong order: v0-v2 (4x apart) before v0-v1 and v1-v2 (2x)
    assert list(zip(table.variant, table.other)) == [("v0", "v2"), ("v0", "v1"), ("v1", "v2")]
    assert table.measured_ratio.tolist() == pytest.approx([0.25, 0.5, 0.5])
    assert not table.held_out_in_order.any() and table.raw_in_order.all()
    assert table.calibrated_in_order.tolist() == [True, False, True]
    assert table.calibrated_ratio.tolist() == pytest.approx([2 / 3, 2.0, 1 / 3])
    share, pairs = calibration.pair_agreement(rows, rows.calibrated_us_per_step)
    assert (share, pairs) == (pytest.approx(2 / 3), 3)


def test_a_refit_on_the_same_measurements_says_whether_the_held_out_pair_agreement_dropped():
    fitted = calibration.Calibration("sm_90", "H200", {}, 1.0, 10, 0.2, 0.1, source="run A",
                                     median_rel_error_held_out=0.14, pair_agreement={"pairs": 10, "held_out": 0.9})
    worse = dataclasses.replace(fitted, median_rel_error_held_out=0.12, pair_agreement={"pairs": 10, "held_out": 0.8})
    assert calibration.against_previous(fitted, worse) == (
        "against the calibration it replaces (same measurements): held-out median error 14.0% -> 12.0%, "
        "held-out pairs in order 90.0% -> 80.0% (dropped: the model change does not pass)")
    assert calibration.against_previous(worse, fitted).endswith("80.0% -> 90.0% (did not drop)")
    # other measurements, or a calibration older than the held-out numbers: nothing to compare
    assert calibration.against_previous(dataclasses.replace(fitted, source="run B"), worse) is None
    assert calibration.against_previous(dataclasses.replace(fitted, median_rel_error_held_out=None), worse) is None
    assert calibration.against_previous(None, worse) is None


def test_a_kernel_held_out_of_the_fit_is_estimated_by_the_others_factors():
    """Three kernels, the time of each 2x its ``mma`` term plus 0.5x its barrier term: every kernel's
    held-out estimate is right where the others pin both factors (they have both terms), and the
    lone kernel of a term nobody else has keeps that term's prior factor 1."""
    terms = np.zeros((6, len(cost.TERMS)))
    mma, bar, smem = (cost.TERMS.index(name) for name in ("mma", "bar", "smem"))
    terms[:, mma] = [1.0, 2.0, 1.5, 0.5, 1.0, 1.0]
    terms[:, bar] = [1.0, 0.5, 2.0, 1.0, 3.0, 0.0]
    terms[5, smem] = 1.0
    measured = 2.0 * terms[:, mma] + 0.5 * terms[:, bar] + 3.0 * terms[:, smem]
    groups = np.array(["a", "a", "b", "b", "c", "d"])
    held_out = calibration.held_out_estimates(terms, measured, groups)
    # within 5 %: the ridge pulls five rows' factors a little towards 1
    assert held_out[:5] == pytest.approx(measured[:5], rel=0.05)
    assert held_out[5] == pytest.approx(2.0 * 1.0 + 1.0 * 1.0, rel=0.05)  # smem at its prior 1, not 3
    assert calibration.fit_factors(terms, measured)[smem] > 2.5  # one row of it: the ridge pulls harder
    # one kernel alone has nothing to be held out of: its raw estimate
    assert calibration.held_out_estimates(terms, measured, np.array(["a"] * 6)) == pytest.approx(terms.sum(axis=1))


def _ablation_csvs(tmp_path, l2_factor: float) -> tuple[Path, Path]:
    """A measured step ablation and its estimate: ``load`` is an L2 term alone, ``sync`` a
    grid-synchronisation term alone, the program sweep's rows and an unmatched variant extra."""
    from rnnbench.kernels.step_bench import COLUMNS

    estimated, measured = [], []
    for hidden in (256, 768):
        for variant, terms in (("load", {"l2_load": hidden / 512}), ("sync", {"grid_sync": 1.5})):
            base = dict.fromkeys(COLUMNS, 0) | {"cell": "lstm", "dtype": "bfloat16", "hidden_size": hidden, "batch": 16,
                                                "variant": variant, "programs": 96, "planned_programs": 96}
            row = base | {f"t_{term}": value for term, value in terms.items()}
            estimated.append(row | {"us_per_step": sum(terms.values()), "source": "estimate sm_90"})
            true = l2_factor * terms.get("l2_load", 0.0) + 0.5 * terms.get("grid_sync", 0.0)
            measured.append(base | {"us_per_step": true, "source": "measured", "device_name": "NVIDIA H100 80GB HBM3"})
    measured.append(measured[0] | {"programs": 12, "us_per_step": 99.0})  # the sweep: not a whole-grid row
    measured.append(measured[0] | {"variant": "tagged"})  # no estimate: not joined
    paths = tmp_path / "ablation.csv", tmp_path / "ablation-estimate.csv"
    for path, rows in zip(paths, (measured, estimated)):
        pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return paths


def test_a_step_ablation_separates_terms_the_suite_cannot(tmp_path):
    """The suite's synthetic shapes have no L2 term, so alone they leave its factor at the prior 1;
    the ablation's ``load`` rows (measured 0.6x their L2 estimate) move it, and its ``sync`` rows
    agree with the suite's 0.5 on the barrier."""
    table = _synthetic_table()
    results = _results_csv(tmp_path, table, 2.0, 0.5)
    alone, _ = calibration.fit(table, results, "sm_90")
    assert alone.scales["l2_load"] == 1.0
    fitted, compared = calibration.fit(table, results, "sm_90", ablation=_ablation_csvs(tmp_path, 0.6))
    assert fitted.scales["l2_load"] == pytest.approx(0.6, rel=0.05)
    assert fitted.scales["grid_sync"] == pytest.approx(0.5, rel=0.05) and fitted.scales["mma"] == pytest.approx(2.0, rel=0.05)
    ablation = compared[compared["mode"] == "ablation"]
    assert sorted(ablation.path.unique()) == ["load", "sync"] and len(ablation) == 4 and fitted.rows == 8 + 4
    # H=256: load 0.3 µs measured against sync 0.75, raw 0.5 against 1.5 (the right order); H=768:
    # the load (1.5 * 0.6 = 0.9) is slower than the sync (0.75), raw 1.5 against 1.5 puts them in
    # no order; calibrated, both pairs are in order
    assert fitted.pair_agreement == {"raw": 0.5, "calibrated": 1.0, "held_out": fitted.pair_agreement["held_out"],
                                     "pairs": 2}
    assert "ablation" in fitted.source


def test_variants_the_model_cannot_represent_stay_out_of_the_fit(tmp_path):
    """:data:`rnnbench.kernels.calibration.UNMODELLED_VARIANTS` (the four one-warp loaders, the
    hand-over in groups): their rows, however far off, change no factor and are not compared."""
    table = _synthetic_table()
    results = _results_csv(tmp_path, table, 2.0, 0.5)
    measured, estimated = _ablation_csvs(tmp_path, 0.6)
    clean, _ = calibration.fit(table, results, "sm_90", ablation=(measured, estimated))
    for path, us in ((measured, 50.0), (estimated, 1.0)):
        rows = pd.read_csv(path)
        extra = rows.iloc[:1].assign(variant="real_gluon_tagged_groups_4", us_per_step=us, t_l2_load=us)
        pd.concat([rows, extra]).to_csv(path, index=False)
    fitted, compared = calibration.fit(table, results, "sm_90", ablation=(measured, estimated))
    assert fitted.scales == clean.scales and fitted.rows == clean.rows
    assert "real_gluon_tagged_groups_4" not in set(compared.path)
    assert "real_gluon_tagged_groups_4" in set(calibration.ablation_comparison(measured, estimated).path)


def test_the_ablation_needs_its_estimate_of_this_version(tmp_path):
    measured, _ = _ablation_csvs(tmp_path, 1.0)
    old = tmp_path / "old-estimate.csv"
    pd.read_csv(measured).drop(columns=["t_l2_load"]).to_csv(old, index=False)
    with pytest.raises(ValueError, match="lacks"):
        calibration.fit(_synthetic_table(), _results_csv(tmp_path, _synthetic_table(), 1.0, 1.0), "sm_90",
                        ablation=(measured, old))


def _tagged_ablation_csvs(tmp_path) -> tuple[Path, Path]:
    """A measured ablation of an older version, whose variant names the estimate's code swapped (at
    7caf667 ``real_gluon_tagged`` had four loaders, ``real_gluon_tagged_one_loader`` one), with each
    loader's measured reloads a step, and one variant the newer code lacks."""
    from rnnbench.kernels.step_bench import COLUMNS

    base = dict.fromkeys(COLUMNS, "") | {"cell": "lstm", "dtype": "bfloat16", "hidden_size": 768, "batch": 16,
                                         "programs": 48, "planned_programs": 48}
    estimated = [base | {"variant": variant, "t_loader": loader, "t_mma": 1.0, "us_per_step": 1.0 + loader,
                         "first_load_complete_us": 1.0 + loader / 2, "source": "estimate sm_90"}
                 for variant, loader in (("real_gluon_tagged", 1.0), ("real_gluon_tagged_four_loaders", 2.0))]
    measured = [base | {"variant": variant, "us_per_step": us, "extra_polls_per_step": polls, "source": "measured",
                        "device_name": "NVIDIA H200"}
                for variant, us, polls in (("real_gluon_tagged", 3.5, 1.0), ("real_gluon_tagged_one_loader", 2.0, 0.5),
                                           ("real_gluon_tagged_delayed", 9.0, 0.1))]
    paths = tmp_path / "ablation.csv", tmp_path / "ablation-estimate.csv"
    for path, rows in zip(paths, (measured, estimated)):
        pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return paths


def test_an_older_ablation_joins_under_renamed_variants_at_its_measured_reloads(tmp_path):
    measured, estimated = _tagged_ablation_csvs(tmp_path)
    renames = calibration.parse_renames("real_gluon_tagged=real_gluon_tagged_four_loaders, "
                                        "real_gluon_tagged_one_loader=real_gluon_tagged,real_gluon_tagged_delayed=")
    assert renames["real_gluon_tagged_delayed"] == ""
    rows = calibration.ablation_comparison(measured, estimated, renames).set_index("path")
    # the swap applies at once, and the dropped variant is gone (it would otherwise meet an estimate
    # of another kernel under its old name)
    assert sorted(rows.index) == ["real_gluon_tagged", "real_gluon_tagged_four_loaders"]
    assert rows.loc["real_gluon_tagged", "measured_us_per_step"] == 2.0
    # one loader at 0.5 reloads a step: halfway between the no-reload step (1.5) and one reload (2.0),
    # every term in proportion; four loaders at 1 reload: the estimate as it is
    one = rows.loc["real_gluon_tagged"]
    assert one.raw_us_per_step == pytest.approx(1.75)
    assert one.t_loader == pytest.approx(1.0 * 1.75 / 2.0) and one.t_mma == pytest.approx(1.75 / 2.0)
    four = rows.loc["real_gluon_tagged_four_loaders"]
    assert four.raw_us_per_step == pytest.approx(3.0) and four.t_loader == pytest.approx(2.0)
    # without the map, the old names meet the wrong estimates: the older four loaders under the newer one's name
    plain = calibration.ablation_comparison(measured, estimated).set_index("path")
    assert list(plain.index) == ["real_gluon_tagged"] and plain.measured_us_per_step.iloc[0] == 3.5


def test_variant_renames_refuse_what_they_cannot_mean(tmp_path):
    measured, estimated = _tagged_ablation_csvs(tmp_path)
    with pytest.raises(ValueError, match="real_gluon_tagged_two_loaders.*not in the measured ablation"):
        calibration.ablation_comparison(measured, estimated, {"real_gluon_tagged_two_loaders": "real_gluon_tagged"})
    with pytest.raises(ValueError, match="OLD=NEW.*'real_gluon_tagged'"):
        calibration.parse_renames("real_gluon_tagged")
    with pytest.raises(ValueError, match="OLD=NEW.*'=real_gluon_tagged'"):
        calibration.parse_renames("=real_gluon_tagged")
    assert calibration.parse_renames("") == {}


def test_cost_command_takes_variant_renames_only_with_an_ablation_and_says_so_before_estimating(monkeypatch, capsys):
    def estimating(*args, **kwargs):
        raise AssertionError("the table was estimated before the arguments were checked")

    monkeypatch.setattr(cost, "cost_table", estimating)
    assert main(["kernels", "--cost", "--ablation-renames", "a=b"]) == 2
    assert "give --ablation too" in capsys.readouterr().err
    assert main(["kernels", "--cost", "--ablation", "ablation.csv", "estimate.csv"]) == 2
    assert "give --calibrate RESULTS_CSV too" in capsys.readouterr().err


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
                                      input_tiles=0,
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
    ablation = [str(path) for path in _ablation_csvs(tmp_path, 0.6)]
    assert main(["kernels", "--cost", "--ablation", *ablation]) == 2
    assert "give --calibrate RESULTS_CSV too" in capsys.readouterr().err
    assert main(["kernels", "--cost", "--calibrate", str(results), "--ablation", *ablation, "--calibration", str(out)]) == 0
    assert calibration.Calibration.load(out).scales["l2_load"] == pytest.approx(0.6, rel=0.05)
    err = capsys.readouterr().err
    assert "2 step-ablation pairs ordered as measured: 50% raw, 100% calibrated" in err
    assert "against the calibration it replaces" not in err  # it replaced a fit without the ablation's rows
    assert main(["kernels", "--cost", "--calibrate", str(results), "--ablation", *ablation, "--calibration", str(out)]) == 0
    # the same fit again (held out, the load variant is the only one with an L2 term: its factor stays 1)
    assert "held-out pairs in order 50.0% -> 50.0% (did not drop)" in capsys.readouterr().err
    pairs = pd.read_csv(tmp_path / "cost-vs-measured-pairs.csv")
    assert len(pairs) == 2 and set(pairs.variant) | set(pairs.other) == {"load", "sync"}


def test_cost_command_refuses_an_unknown_dtype(capsys):
    assert main(["kernels", "--cost", "--dtypes", "float64"]) == 2
    assert "dtype must be one of" in capsys.readouterr().err


@pytest.mark.parametrize("version", ["3.9", "3.6"])
def test_committed_cost_tables_run_every_16_bit_goal_shape_co_resident_and_without_spills(version):
    """The cost tables compile every shape as it runs (H divisible by 16), so they are where a spill
    of what really executes shows (a row the planner does not allow never runs: under Triton 3.9 the
    float32 LSTM backward at H=1024, 8 warps at 255 registers and 280 KiB of shared memory, more than
    an SM has, spills 16 bytes once its state loads narrow, rnnbench.kernels.operand_layout); and
    issue 8's plan: every 16-bit goal shape with B <= 64 runs a co-resident path, never one launch
    per step."""
    table = pd.read_csv(Path(__file__).parent.parent / "reports" / "aot" / f"cost-sm_90-triton{version}.csv")
    runs = table[table.plan_allows]
    assert len(runs) > len(table) / 2
    assert (runs.spill_bytes == 0).all(), runs[runs.spill_bytes > 0].iloc[:, :12].to_string()
    assert not table[table.spill_bytes > 0].coresident.any()
    planned = table[table.planned & (table.batch <= 64) & (table.dtype != "float32")]
    assert len(planned) == 2 * len(cost.GOAL_HIDDEN) * 3 * (3 + 2)
    assert (planned.path != "stepwise").all() and planned.coresident.all()
    # the step the model read is the time loop: its MMAs are in it (a loop-invariant product hoisted
    # out of the loop left the model reading the prologue, in the step ablation's mma variants),
    # and every cooperative step polls its barrier, but the Gluon forwards that exchange tagged words
    # (the planner's inference forwards up to H=768), whose loader's wait is no poll of flags
    assert (table.mma > 0).all(), table[table.mma == 0].iloc[:, :12].to_string()
    tagged = table.tagged_exchange.fillna(False).astype(bool)
    assert (table[table.path.isin(["cooperative", "gluon"]) & ~tagged].poll_loops > 0).all()
    assert tagged.any() and (table[tagged].poll_loops == 0).all() and set(table[tagged].path) == {"gluon"}
    assert set(table[tagged].direction) == {"fwd"} and table[tagged].hidden_size.max() == 768


#: a time loop whose poll reports a timeout in a block of its own (as the kernels' barriers do:
#: an atomic max on the status word, branched around while the wait is young), then a fence that
#: waits for this thread's outstanding stores and atomics
TIMEOUT_REPORT = """
        /*0000*/                   MOV R6, RZ ;
.L_x_0:
        /*0010*/                   HMMA.16816.F32.BF16 R24, R4, R8, R24 ;
.L_x_1:
        /*0020*/                   LDG.E.STRONG.GPU R10, desc[UR14][R2.64] ;
        /*0030*/                   ISETP.GE.AND P5, PT, R10, R6, PT ;
        /*0040*/              @!P4 BRA `(.L_x_2) ;
        /*0050*/                   S2R R11, SR_LANEID ;
        /*0060*/                   ISETP.EQ.U32.AND P3, PT, R11, RZ, PT ;
        /*0070*/               @P3 REDG.E.MAX.S32.STRONG.GPU desc[UR14][R2.64+0x400], R6 ;
.L_x_2:
        /*0080*/              @!P5 BRA `(.L_x_1) ;
        /*0090*/                   MEMBAR.ALL.GPU ;
        /*00a0*/                   IADD3 R6, R6, 0x1, RZ ;
        /*00b0*/                   ISETP.NE.AND P0, PT, R6, 0x8, PT ;
        /*00c0*/               @P0 BRA `(.L_x_0) ;
        /*00d0*/                   EXIT ;
"""


def test_the_timeout_report_is_not_on_the_step_path():
    """The heaviest path would run the report's block (3 more instructions), and the fence after the
    poll would wait an L2 round trip for the atomic: the step takes the branch around it."""
    for form in (TIMEOUT_REPORT, _as_cuobjdump(TIMEOUT_REPORT)):
        path = sass.step_path(sass.parse(form))
        assert [ins.address for ins in path.instructions] == [0x10, 0x20, 0x30, 0x40, 0x80, 0x90, 0xa0, 0xb0, 0xc0]
        assert sass.count(path).atomics == 0 and path.poll_loops == 1
    # a report predicated in straight-line code (no branch around it) stays on the path, as no work
    inline = TIMEOUT_REPORT.replace("@!P4 BRA `(.L_x_2)", "NOP")
    path = sass.step_path(sass.parse(inline))
    assert 0x70 in [ins.address for ins in path.instructions] and sass.count(path).atomics == 0
    context = cost.WarpContext(warps_per_scheduler=1, warps_per_sm=4, l2_bytes_per_clock=64.0,
                               hbm_bytes_per_clock=12.0, mma_fma_per_clock=2048 / 6, latencies=cost.Latencies())
    trace: list = []
    cost.simulate(path, context, trace=trace)
    fence = next(issue for ins, issue, _ in trace if ins.base == "MEMBAR")
    report = next(issue for ins, issue, _ in trace if ins.reports_timeout)
    assert fence - report < context.latencies.store  # the fence does not wait for the report's round trip


@pytest.mark.parametrize("cell, path, hidden, poll_bytes, fused", [("lstm", "cooperative", 256, [4, 4], False),
                                                                   ("lstm", "gluon", 768, [4, 8], False),
                                                                   ("lstm", "gluon", 768, [4, 8], True),
                                                                   ("lstm", "gluon", 1024, [4, 8], False),
                                                                   ("rnn", "cooperative", 768, [4, 8], False)])
def test_the_acquire_poll_is_one_round_trip(cell, path, hidden, poll_bytes, fused, monkeypatch):
    """With acquire poll loads (the default order) a flag load is followed by a ``CCTL.IVALL`` that
    waits for it, so each thread loads its flags as one vector and invalidates once: one L2 round
    trip per poll (32 programs: 1 flag per thread; the Gluon LSTM forward's 48 and 64 and the plain
    Elman forward's 48 (4 warps), polled as 64: 2 flags in one 8-byte load). The status word's load
    is relaxed in either order and in flight beside it, not one more round trip ahead: nothing reads
    its register before the last flag load has issued (with 4 of the Gluon forward's weight tiles in
    registers at H=1024, Triton 3.6 gave both loads one register, and the flags' load waited).
    ``fused``: the Gluon forward with its input projection fused, whose step the recurrence's
    partition runs (the model's step path: the time loop that stores to global memory). The Gluon
    forward with its grid barrier (the compiling processes' ``RNNBENCH_TAGGED_EXCHANGE=off``: the
    planner's at H=768 exchanges tagged words instead)."""
    from rnnbench.kernels.aot import compile_all, compile_sass

    monkeypatch.setenv("RNNBENCH_TAGGED_EXCHANGE", "off")

    rows = cost.shape_rows(cells=(cell,), hidden_sizes=(hidden,), batches=(16,))
    shape = next(row for row in rows if row["path"] == path and row["direction"] == "fwd"
                 and (row["plan"].input_tiles > 0) == fused)
    assert shape["config"].poll_order == "acquire"
    try:
        ((_, text),) = compile_all(90, [shape["config"]], 1, job=compile_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    instructions = sass.parse(text)
    path_instructions = sass.step_path(instructions).instructions
    # the poll's loads are the strong ones of the innermost loop that invalidates (the plain kernel's
    # state loads are strong too, and narrower than 16 bytes where operand_layout narrows them)
    poll_loop = min((loop for loop in sass.loops(instructions) if any(ins.base == "CCTL" for ins in loop)), key=len)
    poll_loads = [ins for ins in poll_loop if ins.base in sass.GLOBAL_LOADS and ins.strong]
    invalidations = [ins for ins in path_instructions if ins.base == "CCTL"]
    assert sorted(ins.access_bytes() for ins in poll_loads) == poll_bytes and len(invalidations) == 1
    first, last = (path_instructions.index(ins) for ins in (poll_loads[0], poll_loads[-1]))
    loaded = set(sass.writes(poll_loads[0]))
    assert not [ins.opcode for ins in path_instructions[first + 1:last + 1] if loaded & set(sass.reads(ins))]


def test_a_tagged_estimate_is_read_at_the_measured_reload_rate():
    """``at_reload_rate``: every time term, the latency path and the sum move the given share of the
    way from the complete step to the one-reload step (0: complete, 1: one reload); the counts stay
    the one-reload step's; a rate outside 0-1 is refused by value. The committed tables read their
    tagged rows at ``TAGGED_RELOADS_PER_STEP`` (the H200's measured rate), between the two."""
    one = {"mma": 48, "t_l2_load": 1.0, "t_grid_sync": 0.5, "latency_path_us": 2.0, "raw_us_per_step": 1.5,
           "tagged_exchange": True}
    complete = {"mma": 48, "t_l2_load": 0.4, "t_grid_sync": 0.3, "latency_path_us": 1.0, "raw_us_per_step": 0.7,
                "tagged_exchange": True}
    half = cost.at_reload_rate(one, complete, 0.5)
    assert half == {"mma": 48, "t_l2_load": pytest.approx(0.7), "t_grid_sync": pytest.approx(0.4),
                    "latency_path_us": pytest.approx(1.5), "raw_us_per_step": pytest.approx(1.1),
                    "tagged_exchange": True, "tagged_reloads_per_step": 0.5}
    assert cost.at_reload_rate(one, complete, 1)["raw_us_per_step"] == 1.5
    assert cost.at_reload_rate(one, complete, 0)["raw_us_per_step"] == 0.7
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        cost.at_reload_rate(one, complete, 1.5)
    assert 0 < cost.TAGGED_RELOADS_PER_STEP < 1
    for version in ("3.6", "3.9"):
        table = pd.read_csv(Path(__file__).parent.parent / "reports" / "aot" / f"cost-sm_90-triton{version}.csv")
        tagged = table[table.tagged_exchange.fillna(False).astype(bool)]
        assert len(tagged) and (tagged.tagged_reloads_per_step == cost.TAGGED_RELOADS_PER_STEP).all(), version


def test_the_gemms_beside_the_kernel_leave_only_a_first_chunk_on_the_calls_path():
    """With :func:`rnnbench.kernels.switches.overlapped_projection` the forward's GEMM term keeps the first
    chunk's share of the call (32 of 1024 steps), with :func:`~rnnbench.kernels.switches.overlapped_gradients`
    the backward's (the last range, after the recurrence), where each is allowed; a plain kernel's
    projection, a backward whose float32 sums would be too big (B=1) or whose recurrence leaves too
    few SMs free, and the defaults (off) keep all."""
    from rnnbench.kernels.cost import serial_gemm_share
    from rnnbench.kernels.plan import OVERLAPPED_CHUNK_STEPS, plan_gluon
    from rnnbench.kernels.switches import overlapped_gradients, overlapped_projection

    gluon = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    backward = plan_gluon("lstm", 768, 16, torch.bfloat16, 132, backward=True)
    plain = dataclasses.replace(gluon, path="cooperative")
    anchor = dict(dtype=torch.bfloat16, batch=16, hidden_size=768, multiprocessors=132)
    assert serial_gemm_share(gluon, "fwd", 1024, **anchor) == serial_gemm_share(backward, "bwd", 1024, **anchor) == 1.0
    with overlapped_projection(True):
        assert serial_gemm_share(gluon, "fwd", 1024, **anchor) == OVERLAPPED_CHUNK_STEPS / 1024
        assert serial_gemm_share(gluon, "fwd_train", 16, **anchor) == 1.0  # one chunk: all of it
        assert serial_gemm_share(backward, "bwd", 1024, **anchor) == serial_gemm_share(plain, "fwd", 1024, **anchor) == 1.0
    with overlapped_gradients(True):
        assert serial_gemm_share(backward, "bwd", 1024, **anchor) == OVERLAPPED_CHUNK_STEPS / 1024
        assert serial_gemm_share(dataclasses.replace(backward, path="cooperative"), "bwd", 1024, **anchor) \
            == OVERLAPPED_CHUNK_STEPS / 1024
        assert serial_gemm_share(backward, "bwd", 1024, **(anchor | dict(batch=1))) == 1.0
        # 128 programs of H=1024 B=64 leave 4 of 132 SMs free: not beside
        wide = plan_gluon("lstm", 1024, 64, torch.bfloat16, 132, backward=True)
        assert wide.programs == 128
        assert serial_gemm_share(wide, "bwd", 1024, **(anchor | dict(batch=64, hidden_size=1024))) == 1.0
        assert serial_gemm_share(gluon, "fwd", 1024, **anchor) == 1.0


def test_cost_command_switches_the_thread_poll_the_local_gates_and_the_overlapped_projection_for_its_table(
        monkeypatch):
    """``--tagged-thread-poll``, ``--local-gates``, ``--overlapped-projection``, ``--streamed-copies``,
    ``--tagged-training`` and ``--overlapped-gradients`` hold for the table's estimate only: the plan's
    switches (and, but for the two overlaps, the environment the spawned compilers import them from) are on while
    ``cost_table`` runs and as they were after."""
    import os

    from rnnbench.kernels import switches

    table = _synthetic_table().assign(target="sm_90", coresident=True, programs=8, programs_per_sm=2, registers=90,
                                      input_tiles=0, instructions=500, mma=8, mma_chain=2, ldsm=9, bar=20, shfl=40,
                                      global_load_bytes_per_program=8192)
    seen = []

    def fake_table(*args, calibration=None, **kwargs):
        seen.append((switches.GLUON_TAGGED_THREAD_POLL, os.environ.get(switches.TAGGED_THREAD_POLL_ENV),
                     switches.GLUON_LOCAL_GATES, os.environ.get(switches.LOCAL_GATES_ENV),
                     switches.GLUON_OVERLAPPED_PROJECTION,
                     switches.GLUON_BACKWARD_STREAMED, os.environ.get(switches.BACKWARD_STREAMED_ENV),
                     switches.GLUON_TAGGED_TRAINING, os.environ.get(switches.TAGGED_TRAINING_ENV),
                     switches.OVERLAPPED_GRADIENTS))
        return table

    monkeypatch.setattr(cost, "cost_table", fake_table)
    for variable in (switches.TAGGED_THREAD_POLL_ENV, switches.LOCAL_GATES_ENV, switches.BACKWARD_STREAMED_ENV,
                     switches.TAGGED_TRAINING_ENV):
        monkeypatch.delenv(variable, raising=False)
    assert main(["kernels", "--cost", "--calibration", "none"]) == 0
    assert main(["kernels", "--cost", "--calibration", "none", "--tagged-thread-poll", "--overlapped-projection"]) == 0
    assert main(["kernels", "--cost", "--calibration", "none", "--local-gates"]) == 0
    assert main(["kernels", "--cost", "--calibration", "none", "--streamed-copies", "--tagged-training"]) == 0
    assert main(["kernels", "--cost", "--calibration", "none", "--overlapped-gradients"]) == 0
    off = (False, None)
    assert seen == [(*off, *off, False, *off, *off, False), (True, "on", *off, True, *off, *off, False),
                    (*off, True, "on", False, *off, *off, False), (*off, *off, False, True, "on", True, "on", False),
                    (*off, *off, False, *off, *off, True)]
    assert switches.GLUON_TAGGED_THREAD_POLL is False and switches.TAGGED_THREAD_POLL_ENV not in os.environ
    assert switches.GLUON_LOCAL_GATES is False and switches.LOCAL_GATES_ENV not in os.environ
    assert switches.GLUON_OVERLAPPED_PROJECTION is False
    assert switches.GLUON_BACKWARD_STREAMED is False and switches.BACKWARD_STREAMED_ENV not in os.environ
    assert switches.GLUON_TAGGED_TRAINING is False and switches.TAGGED_TRAINING_ENV not in os.environ
    assert switches.OVERLAPPED_GRADIENTS is False
