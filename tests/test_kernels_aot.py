"""Every shipped kernel configuration compiles for sm_90 and sm_80 and fits: shared memory within
the target's per-block limit, registers within the register file, zero spill bytes, and the
planner's resource model (rnnbench.kernels.plan.kernel_resources) not below what was compiled, so
the planner never promises a co-residency the compiled kernels do not have.

Compiling the configurations of each variant (plain, and bidirectional with per-row lengths)
takes several minutes per target on 2 cores without a warm Triton cache; no GPU is needed.
"""

import io

import pandas as pd
import pytest

from rnnbench.harness.cli import KERNEL_COLUMNS, main
from rnnbench.kernels.aot import compile_all, shipped_configs


@pytest.mark.parametrize("arch", [90, 80])
def test_shipped_configurations_cover_every_path_cell_dtype_and_direction(arch):
    configs = pd.DataFrame([vars(c) for c in shipped_configs(arch)])
    assert set(configs.path) == {"persistent", "cooperative", "stepwise"}
    assert set(configs.cell) == {"lstm", "rnn"}
    assert set(configs.dtype) == {"float32", "float16", "bfloat16"}
    assert set(configs.direction) == {"fwd", "fwd_train", "bwd"}
    assert {768, 1024, 4096} <= set(configs.h_pad) and set(configs.block_b) == {16, 64}
    assert set(configs[configs.k_chunks > 1].path) == {"cooperative", "stepwise"}
    assert set(configs[configs.dtype == "float32"].precision) == {"tf32", "ieee"}
    assert len(configs) == len(configs.drop_duplicates())
    # every configuration also in the variant with both directions in one launch and per-row lengths
    variants = configs.groupby(["kernel", "path", "dtype", "precision", "h_pad", "block_b", "direction"])
    assert all(sorted(zip(group.directions, group.lengths)) == [(1, False), (2, True)] for _, group in variants)


def test_sm90_cli_table_every_configuration_fits(capsys):
    code = main(["kernels", "--target", "sm_90", "--csv"])
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == KERNEL_COLUMNS
    misfits = table[~table.fits]
    assert misfits.empty, misfits.to_string()
    assert (table.spill_bytes == 0).all() and (table.shared_bytes <= 232448).all()
    assert code == 0


@pytest.mark.parametrize("directions", [
    1, pytest.param(2, marks=pytest.mark.slow, id="2"),  # the sm_90 table above already covers the variants
])
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
