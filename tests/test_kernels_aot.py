"""Every shipped kernel configuration compiles for sm_90 and sm_80 and fits, as it runs (for an ``H``
divisible by 16, which Triton specialises, and for any other ``H``): shared memory within
the target's per-block limit, registers within the register file, no spilled register accessed on
the per-step path (a spill stored before the time loop and reloaded after it costs nothing per
step; the tables list its bytes and ``step_spill_accesses``), and the
planner's resource model (rnnbench.kernels.plan.kernel_resources) not below what was compiled, so
the planner never promises a co-residency the compiled kernels do not have.

The evidence is the committed tables ``reports/aot/kernels-sm_{80,90}-triton{3.9,3.6}.csv`` (``make
kernels-sm90 kernels-sm80`` with each Triton regenerates them; the planner's layouts depend on the
Triton version, rnnbench.kernels.plan.BATCHED_DOT_SPREADS_WARPS, so each version is checked against
its own tables, and CI's 3.9 also against 3.6's shipped layouts): the default run checks that they cover every shipped
configuration and that every row fits, and recompiles a sample of one configuration per kernel,
path, direction and variant to check that the tables are current (a kernel change that moves
registers or shared memory fails here until the tables are regenerated). Compiling all ~2300
configurations of a target takes many minutes on 2 cores without a warm Triton cache, so the full
compile is marked slow.
"""

import dataclasses
import io
from pathlib import Path

import pandas as pd
import pytest
import torch
import triton

import rnnbench.kernels.plan
from rnnbench.harness.cli import KERNEL_COLUMNS, main
from rnnbench.kernels.aot import SHARED_MEMORY_LIMIT, KernelConfig, compile_all, shipped_configs

ROOT = Path(__file__).resolve().parent.parent
#: the committed tables were compiled with these Tritons (another version compiles other code), the
#: first one CI's
TABLE_TRITONS = ("3.9.0", "3.6.0")
#: the tables this Triton's planner is checked against (CI's for any other version)
TABLE_TRITON = triton.__version__ if triton.__version__ in TABLE_TRITONS else TABLE_TRITONS[0]
CONFIG_FIELDS = [field.name for field in dataclasses.fields(KernelConfig)]
RESOURCES = ["shared_bytes", "registers", "spill_bytes", "step_spill_accesses"]


def committed_table(arch: int, version: str = TABLE_TRITON) -> pd.DataFrame:
    return pd.read_csv(ROOT / "reports" / "aot" / f"kernels-sm_{arch}-triton{version[:3]}.csv")


def shipped_with(version: str, arch: int) -> list[KernelConfig]:
    """What the planner ships for ``sm_<arch>`` when the kernels are compiled by Triton ``version``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS",
                      tuple(int(part) for part in version.split(".")[:2]) >= (3, 9))
        return shipped_configs(arch)


def sample_configs(arch: int) -> list[KernelConfig]:
    """One configuration per (kernel, path, direction, variant), rotating over dtypes, precisions and
    hidden sizes so that every one of them is compiled by some group."""
    groups: dict[tuple, list[KernelConfig]] = {}
    for config in shipped_configs(arch):
        groups.setdefault((config.kernel, config.path, config.direction, config.directions, config.hidden_divisible),
                          []).append(config)
    return [members[(index * 7) % len(members)] for index, members in enumerate(groups.values())]


@pytest.mark.parametrize("version", TABLE_TRITONS)
@pytest.mark.parametrize("arch", [90, 80])
def test_committed_table_covers_every_configuration_and_every_row_fits(arch, version):
    table = committed_table(arch, version)
    shipped = pd.DataFrame([dataclasses.asdict(config) for config in shipped_with(version, arch)])
    keys = table[CONFIG_FIELDS].astype(str).apply(tuple, axis=1)
    assert set(keys) == set(shipped[CONFIG_FIELDS].astype(str).apply(tuple, axis=1)), \
        f"reports/aot/kernels-sm_{arch}-triton{version[:3]} does not list the shipped configurations: regenerate " \
        f"it with Triton {version} (make kernels-sm{arch})"
    misfits = table[~table.fits]
    assert misfits.empty, f"{len(misfits)} of {len(table)} configurations spill or exceed the planner's resource " \
        "bound:\n" + misfits[CONFIG_FIELDS + RESOURCES + ["model_shared_bytes", "model_registers"]].to_string()
    assert (table.shared_bytes <= SHARED_MEMORY_LIMIT[arch]).all()


@pytest.mark.skipif(triton.__version__ not in TABLE_TRITONS, reason=f"the committed tables are Triton {TABLE_TRITONS}'s")
@pytest.mark.parametrize("arch", [90, 80])
def test_a_sample_compiles_to_the_committed_resources(arch):
    sample = sample_configs(arch)
    assert len({(c.dtype, c.precision) for c in sample}) >= 4 and len({c.h_pad for c in sample}) >= 4
    compiled = pd.DataFrame([result.as_row() for result in compile_all(arch, sample)])
    merged = compiled.astype({name: str for name in CONFIG_FIELDS}).merge(
        committed_table(arch).astype({name: str for name in CONFIG_FIELDS}), on=CONFIG_FIELDS, suffixes=("", "_committed"))
    assert len(merged) == len(sample)
    for name in RESOURCES:
        stale = merged[merged[name] != merged[f"{name}_committed"]]
        assert stale.empty, f"{name} differs from the committed table (make kernels-sm{arch}):\n" + \
            stale[CONFIG_FIELDS + [name, f"{name}_committed"]].to_string()
    misfits = compiled[~compiled.fits]
    assert misfits.empty, misfits[CONFIG_FIELDS + RESOURCES].to_string()


@pytest.mark.parametrize("arch", [90, 80])
def test_shipped_configurations_cover_every_path_cell_dtype_and_direction(arch):
    configs = pd.DataFrame([vars(c) for c in shipped_configs(arch)])
    assert set(configs.path) == {"persistent", "cooperative", "stepwise"}
    assert set(configs.cell) == {"lstm", "rnn"}
    assert set(configs.dtype) == {"float32", "float16", "bfloat16"}
    assert set(configs.direction) == {"fwd", "fwd_train", "bwd"}
    assert {768, 1024, 4096} <= set(configs.h_pad) and set(configs.block_b) == {16, 32, 64}
    # 32 rows: the 16-bit cooperative layer of B=64, forward and backward (plan.HALF_BLOCK_B)
    half = configs[configs.block_b == 32]
    assert set(zip(half.cell, half.path, half.block_h)) == {("lstm", "cooperative", 16), ("rnn", "cooperative", 32)}
    assert set(half.direction) == {"fwd", "fwd_train", "bwd"} and set(half.dtype) == {"float16", "bfloat16"}
    assert set(configs[configs.k_chunks > 1].path) == {"cooperative", "stepwise"}
    assert set(configs[configs.dtype == "float32"].precision) == {"tf32", "ieee"}
    # each layout as it runs for an H divisible by 16 (Triton specialises it) and for any other H
    assert set(configs.hidden_divisible) == {True, False}
    assert len(configs) == len(configs.drop_duplicates())
    # every configuration also in the variant with both directions in one launch and per-row lengths
    variants = configs.groupby([name for name in CONFIG_FIELDS if name not in ("directions", "lengths")])
    assert all(sorted(zip(group.directions, group.lengths)) == [(1, False), (2, True)] for _, group in variants)


def test_the_poll_order_is_the_plans():
    """Each cooperative kernel compiles the barrier poll its plan asks for (a constexpr of the
    launch, ``Plan.poll_order``): acquire loads, or relaxed loads and one fence after them."""
    from rnnbench.kernels.aot import compile_ptx
    from rnnbench.kernels.plan import POLL_ORDER_NAMES, plan_recurrence

    configs = []
    for cell, direction in (("lstm", "fwd"), ("lstm", "bwd"), ("rnn", "fwd"), ("rnn", "bwd")):
        plan = plan_recurrence(cell, 768, 16, torch.bfloat16, "cooperative", 132, arch=90, backward=direction == "bwd")
        configs += [KernelConfig.from_plan(dataclasses.replace(plan, poll_order=order), "bfloat16", direction)
                    for order in POLL_ORDER_NAMES]
    for config, (resources, ptx) in zip(configs, compile_all(90, configs, job=compile_ptx)):
        assert resources.fits, resources
        relaxed = "ld.global.relaxed.gpu" in ptx and "fence.acq_rel.gpu" in ptx
        acquire = "ld.global.acquire.gpu" in ptx
        assert (relaxed, acquire) == ((True, False) if config.poll_order == "relaxed" else (False, True)), config


@pytest.mark.slow
def test_sm90_cli_table_every_configuration_fits(capsys):
    code = main(["kernels", "--target", "sm_90", "--csv"])
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == KERNEL_COLUMNS
    misfits = table[~table.fits]
    assert misfits.empty, misfits.to_string()
    assert (table.spill_bytes == 0).all() and (table.shared_bytes <= 232448).all()
    assert code == 0


@pytest.mark.slow
@pytest.mark.parametrize("directions", [1, 2])
def test_sm80_every_configuration_fits(directions):
    configs = [config for config in shipped_configs(80) if config.directions == directions]
    misfits = [r for r in compile_all(80, configs) if not r.fits]
    assert configs and not misfits, "\n".join(map(str, misfits))


def test_unknown_target_is_refused(capsys):
    assert main(["kernels", "--target", "sm_75"]) == 2
    assert "unknown target 'sm_75'" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_bad_job_count(capsys, jobs):
    assert main(["kernels", "--jobs", jobs]) == 2
    assert "--jobs must be a positive integer" in capsys.readouterr().err
