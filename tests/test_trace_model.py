"""The cost model's phases beside the step trace's (:mod:`rnnbench.kernels.trace_model`): the stamps
read from the traced Gluon forwards' SASS (compiled here for sm_90, no GPU), a stamp that waits for
the load it follows, the model's phases of the tagged and the barrier forward (adding up to the
model's step, moving with the reload rate), and the table against a synthetic trace summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rnnbench.kernels import step_trace, trace_model
from rnnbench.kernels.aot import compile_all
from rnnbench.kernels.trace_events import EVENTS
from test_step_trace import BARRIER_CYCLES, TAGGED_CYCLES, _synthetic

#: the traced kernels compiled here: the tagged forward (one four-warp loader), its thread-polling
#: loader, and the grid barrier's, at the anchor
VARIANTS = ("real_gluon_tagged", "real_gluon_tagged_thread_poll", "real_gluon")
RECURRENCE_EVENTS = {"step_start", "state_ready", "product_done", "state_out", "state_out_ns", "step_end"}
LOADER_EVENTS = {"loader_start", "first_load", "first_load_ns", "loader_fresh", "loader_handed"}


def _compiled(variant: str, arch: int = 90) -> tuple:
    """``(SASS, plan, registers, shared bytes)`` of the traced ``variant`` at H=768 B=16, bf16, as
    :func:`rnnbench.kernels.trace_model.traced_model` compiles it (a job for ``compile_all``)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_recurrence
    from rnnbench.kernels.sass import disassemble
    from rnnbench.kernels.step_bench import REAL_PATHS

    kernel = REAL_PATHS[variant]
    with kernel.switches():
        plan = kernel.plan(plan_recurrence("lstm", 768, 16, torch.bfloat16, kernel.path, 132, arch=arch),
                           torch.bfloat16, 132)
        compiled = compile_forward(plan, torch.bfloat16, training=False, has_lengths=False, arch=arch, trace=True)
    return disassemble(compiled.asm["cubin"]), plan, cubin_resources(compiled.asm["cubin"])[0], \
        int(compiled.metadata.shared)


@pytest.fixture(scope="module")
def compiled() -> dict:
    return dict(zip(VARIANTS, compile_all(90, list(VARIANTS), job=_compiled)))


def _events(path) -> set[str]:
    from rnnbench.kernels.sass import trace_stamps

    return {EVENTS[offset // 8] for offset in trace_stamps(path.instructions).values()}


def test_every_stamp_of_a_traced_kernel_is_found_on_its_paths(compiled):
    """The recurrence's six events on its step, the loader's five on both its paths (a reload and
    none: the path without one is a later step's, not step 0's unchecked load), none without a
    loader."""
    from rnnbench.kernels.sass import loader_path, parse, step_path

    for variant, (sass, *_) in compiled.items():
        instructions = parse(sass)
        assert _events(step_path(instructions)) == RECURRENCE_EVENTS, variant
        if variant == "real_gluon":
            assert loader_path(instructions) is None
            continue
        for complete in (False, True):
            assert _events(loader_path(instructions, complete)) == LOADER_EVENTS, (variant, complete)


def test_the_first_loads_stamp_is_read_after_the_load_arrives(compiled):
    """``first_load``'s clock read comes after an instruction that reads the first load's last vector
    (issued in order, so not before that vector arrived): with the thread poll nothing else between
    the loads and the stamp uses them (``clock64_after``'s predicate does)."""
    from rnnbench.kernels.sass import loader_path, parse, reads, trace_stamps, writes

    for variant in ("real_gluon_tagged", "real_gluon_tagged_thread_poll"):
        path = loader_path(parse(compiled[variant][0]), True).instructions
        stamp = min(position for position, offset in trace_stamps(path).items()
                    if EVENTS[offset // 8] == "first_load")
        last_load = max(i for i in range(stamp) if path[i].base == "LDG" and path[i].strong)
        loaded = set(writes(path[last_load]))
        assert any(loaded & set(reads(ins)) for ins in path[last_load + 1:stamp]), variant


def test_the_models_phases_add_up_to_its_step_and_move_with_the_reloads(compiled):
    for variant, (sass, plan, registers, shared) in compiled.items():
        phases = {reloads: trace_model.model_phases(sass, plan, registers, shared, torch.bfloat16, reloads)[0]
                  for reloads in (0.0, 0.5, 1.0)}
        names = [name for name, *_ in (step_trace.BARRIER_PHASES if variant == "real_gluon"
                                       else step_trace.TAGGED_PHASES)]
        for reloads, values in phases.items():
            assert set(values) == set(names) | {"step_cycles"}, variant
            assert sum(values[name] for name in names) == pytest.approx(values["step_cycles"]), (variant, reloads)
            assert all(values[name] >= 0 for name in names), (variant, reloads, values)
            assert values["product"] > 300 and values["gates_publish"] > 100, (variant, values)
        if variant == "real_gluon":
            unseen = trace_model.model_phases(sass, plan, registers, shared, torch.bfloat16, 0.0)[1]
            assert phases[0.0] == phases[1.0] and phases[0.0]["barrier"] > unseen["grid_sync"] > 0
            continue
        # a reload lengthens the loader's chain, not the recurrence's own work
        assert phases[1.0]["reloads"] > phases[0.0]["reloads"] + 200, variant
        assert phases[1.0]["product"] == pytest.approx(phases[0.0]["product"], abs=1), variant
        assert phases[0.5]["step_cycles"] == pytest.approx((phases[0.0]["step_cycles"] + phases[1.0]["step_cycles"]) / 2)


def _summary(variant: str, cycles: dict, programs: int = 3) -> pd.DataFrame:
    """A trace-summary.csv's rows (as :mod:`rnnbench.kernels.step_trace` writes them) of a synthetic
    trace whose phase ``name`` lasts ``cycles[name] + p`` in program ``p``; tagged, program ``p``
    polls ``p % 2`` times a step (mean 1/3 with 3 programs)."""
    tagged = "to_loader" in cycles
    trace = _synthetic(step_trace.TAGGED_PHASES if tagged else step_trace.BARRIER_PHASES, cycles, programs)
    if tagged:
        trace[:, :, EVENTS.index("polls")] = (np.arange(programs) % 2)[:, None]
    summary = step_trace.summary(step_trace.phases(trace), 2.0)
    return summary.assign(cell="lstm", hidden_size=768, batch=16, dtype="bfloat16", variant=variant, steps=20,
                          programs=programs)


def test_the_table_puts_the_model_beside_the_trace():
    summary = pd.concat([_summary("real_gluon_tagged", TAGGED_CYCLES),
                         _summary("real_gluon", BARRIER_CYCLES)])
    tasks = trace_model.traced_kernels(summary)
    assert [(task[0], task[5], task[6]) for task in tasks] == [("real_gluon_tagged", pytest.approx(1 / 3), 3),
                                                               ("real_gluon", 0.0, 3)]
    model = {name: cycles + 100 for name, cycles in TAGGED_CYCLES.items()}
    models = [{"phases": model | {"step_cycles": sum(model.values())}, "unseen": {"publish": 139.0},
               "registers": 255, "programs": 3},
              {"skipped": "PathUnavailable: no"}]
    table = trace_model.compare(summary, models)
    rows = table.set_index("phase")
    # the trace's mean of a phase is its cycles plus the mean program's 1; the model's is 100 more
    assert rows.loc["product", "mean"] == 901 and rows.loc["product", "model_minus_mean"] == 99
    chain = sum(TAGGED_CYCLES[name] + 1 for name in list(TAGGED_CYCLES)[:5])
    assert rows.loc["loader_chain", "mean"] == chain
    assert rows.loc["recurrence_chain", "model"] == TAGGED_CYCLES["product"] + TAGGED_CYCLES["gates_publish"] + 200
    assert rows.loc["step_cycles", "model_minus_mean"] == pytest.approx(7 * 100 - 7)
    assert set(table["variant"]) == {"real_gluon_tagged"}  # the skipped kernel has no rows
    text = trace_model.render(table, models, tasks, "H200")
    for expected in ("H200", "real_gluon_tagged: lstm H=768 B=16", f"| loader_chain | {chain} |", "publish 139",
                     "real_gluon: lstm H=768 B=16 bfloat16", "skipped: PathUnavailable: no", "reloads a step"):
        assert expected in text, expected


def test_a_kernel_the_model_cannot_make_as_traced_is_skipped_with_its_reason(tmp_path):
    skipped = trace_model.traced_model_or_skip(("real_gluon_tagged", "lstm", 768, 16, "bfloat16", 0.5, 7))
    assert "the trace 7" in skipped["skipped"] and "48 programs" in skipped["skipped"]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"phase": ["product"], "mean": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="variant"):
        trace_model.traced_kernels(pd.read_csv(bad))
    for argv in ([str(bad)], [str(tmp_path / "missing.csv")]):
        with pytest.raises(SystemExit):
            trace_model.main(argv)
