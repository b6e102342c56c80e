"""Ahead-of-time compilation of every shipped kernel configuration, without a GPU.

A *configuration* is what the size heuristic (:mod:`rnnbench.kernels.plan`) can launch: a kernel (RNN or
LSTM, forward for inference, forward for training, backward) x path x dtype x layout (the padded
hidden size ``H_PAD`` and the block sizes the planner picks for the hidden sizes
:data:`HIDDEN_SIZES` and batch blocks of 16 and 64 rows) x variant.
Variants: the plain kernel (``directions=1``, no ``lengths``) and the one that carries every
option of the drop-in modules (``directions=2``: both directions of a bidirectional layer in one
launch; ``lengths``: per-row sequence lengths of a packed batch). The two single-option variants
run a subset of the latter's code (one direction's time index, or rows that all have length T). Each is compiled with ``triton.compile`` for a target
such as ``sm_90`` and its resources read back: shared memory from the compiled metadata, registers
and spill (stack) bytes per thread from ``cuobjdump --dump-resource-usage`` (shipped in the Triton
wheel). A configuration *fits* when its shared memory is within the target's per-block limit, its
registers fit the register file for one program per SM, and no spilled register is stored or loaded
on its per-step path (:func:`rnnbench.kernels.sass.step_local_accesses`: a spill outside the time
loop costs one store and one load per launch, not per step); and the planner's
resource model (:func:`rnnbench.kernels.plan.kernel_resources`) is checked against what was compiled
(``tests/test_kernels_aot.py``).

:func:`compile_sass` compiles a configuration as it runs (``H`` specialised as divisible by 16) and
returns its SASS too, for the per-step cost model (:mod:`rnnbench.kernels.cost`).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace

import torch

from rnnbench.kernels.plan import (
    DEFAULT_POLL_ORDER, GATES, GLUON, HIDDEN_SPECIALISATION, PATHS, REGISTER_FILE, PathUnavailable, Plan, kernel_resources,
    gluon_input_tiles, plan_gluon, plan_recurrence, row_split,
)
from rnnbench.kernels import switches
from rnnbench.kernels.launch import NUM_STAGES
from rnnbench.kernels.primitives import MODE_NAMES, POLL_ORDERS
from rnnbench.kernels.sass import nvidia_tool, step_local_accesses
from rnnbench.kernels.shared_layouts import extra_wavefronts

#: per-block shared memory limit (bytes, opt-in maximum) of each supported target
SHARED_MEMORY_LIMIT = {80: 166912, 90: 232448}
#: hidden sizes whose layouts are compiled: every padded size up to 256, the goal shapes above, and
#: the largest sizes (the stepwise path's streamed blocks)
HIDDEN_SIZES = (16, 32, 64, 128, 256, 512, 768, 1024, 2048, 4096)
#: batches whose batch blocks are compiled: 16 rows (any B <= 16) and 64 rows
BATCHES = (1, 64)
#: multiprocessors of the largest GPU the tables cover (H100 and H200: 132): a cooperative layout
#: whose grid is not co-resident on that many multiprocessors of the target is never launched there
COOPERATIVE_SMS = 132
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TRITON_TYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
DIRECTIONS = ("fwd", "fwd_train", "bwd")
#: (directions, lengths) of each compiled variant: plain, and bidirectional with per-row lengths
VARIANTS = ((1, False), (2, True))

#: pointer arguments of each kernel and their element type ("data": the storage dtype)
KERNEL_POINTERS = {
    ("lstm", "fwd"): (("xg_ptr", "data"), ("w_hh_ptr", "data"), ("h0_ptr", "data"), ("c0_ptr", "data"),
                      ("y_ptr", "data"), ("c_all_ptr", "fp32"), ("c_n_ptr", "fp32"), ("exchange_ptr", "data"),
                      ("lengths_ptr", "i32"), ("sync_ptr", "i32")),
    ("lstm", "bwd"): (("xg_ptr", "data"), ("w_hh_ptr", "data"), ("c_all_ptr", "fp32"), ("c0_ptr", "data"),
                      ("dy_ptr", "data"), ("dh_n_ptr", "data"), ("dc_n_ptr", "data"), ("dh0_ptr", "fp32"),
                      ("dc0_ptr", "fp32"), ("exchange_ptr", "data"), ("lengths_ptr", "i32"), ("sync_ptr", "i32")),
    ("rnn", "fwd"): (("xw_ptr", "data"), ("w_hh_ptr", "data"), ("h0_ptr", "data"), ("y_ptr", "data"), ("exchange_ptr", "data"),
                    ("lengths_ptr", "i32"), ("sync_ptr", "i32")),
    ("rnn", "bwd"): (("y_ptr", "data"), ("w_hh_ptr", "data"), ("dy_ptr", "data"), ("dh_n_ptr", "data"),
                     ("dz_ptr", "data"), ("dh0_ptr", "fp32"), ("exchange_ptr", "data"), ("lengths_ptr", "i32"),
                     ("sync_ptr", "i32")),
}


@dataclass(frozen=True)
class KernelConfig:
    """One compiled kernel specialisation."""

    kernel: str
    cell: str
    path: str
    dtype: str
    h_pad: int
    direction: str
    block_b: int
    block_h: int
    k_split: int
    num_warps: int
    precision: str = "tf32"
    k_chunks: int = 1
    #: flags the grid barrier polls (the plan's hidden blocks, rounded up to a power of two)
    poll: int = 1
    #: 2: both directions of a bidirectional layer in one launch
    directions: int = 1
    #: whether rows carry their own sequence lengths (packed input)
    lengths: bool = False
    #: compiled for an ``H`` divisible by :data:`~rnnbench.kernels.plan.HIDDEN_SPECIALISATION`, which
    #: Triton specialises at run time (changes registers and vector widths), or for any other ``H``
    hidden_divisible: bool = True
    #: the grid barrier's poll order (:attr:`rnnbench.kernels.plan.Plan.poll_order`)
    poll_order: str = DEFAULT_POLL_ORDER
    #: flags a poll load brings at most (:attr:`rnnbench.kernels.plan.Plan.poll_vector`; the Gluon
    #: kernels always poll in vectors of up to 4, whatever this says)
    poll_vector: int = 1
    #: the Gluon forward's weight tiles held in registers (:attr:`rnnbench.kernels.plan.Plan.register_tiles`)
    register_tiles: int = 0
    #: the Gluon forward's fused input projection (:attr:`rnnbench.kernels.plan.Plan.input_tiles`, 0: none)
    input_tiles: int = 0

    @classmethod
    def from_plan(cls, plan: Plan, dtype: str, direction: str, precision: str = "tf32", directions: int = 1,
                  lengths: bool = False, hidden_divisible: bool = True) -> KernelConfig:
        """The kernel ``plan`` launches for ``direction`` (``fwd``, ``fwd_train`` or ``bwd``), compiled
        as it runs for an ``H`` that is (``hidden_divisible``) or is not divisible by 16."""
        kernel = f"{plan.cell}_{'backward' if direction == 'bwd' else 'forward'}_{'gluon_' if plan.path == GLUON else ''}kernel"
        return cls(kernel, plan.cell, plan.path, dtype, plan.h_pad, direction, plan.block_b, plan.block_h, plan.k_split,
                   plan.num_warps, precision, plan.k_chunks, plan.poll, directions, lengths, hidden_divisible,
                   plan.poll_order, plan.poll_vector, plan.register_tiles, plan.input_tiles)

    @property
    def m_split(self) -> int:
        """The LSTM forward kernel's ``M_SPLIT`` (:func:`rnnbench.kernels.plan.row_split`)."""
        return row_split(self.cell, self.direction == "bwd", self.k_split, self.num_warps)

    @property
    def plan(self) -> Plan:
        """A plan with this configuration's layout (one hidden block per poll flag)."""
        return Plan(self.cell, self.path, self.block_b, self.block_h, self.h_pad, self.k_split, self.num_warps,
                    (self.poll, 1), self.k_chunks, self.directions, self.directions, self.poll_order,
                    self.register_tiles, self.input_tiles)


@dataclass(frozen=True)
class KernelResources:
    """Resources of one configuration compiled for one target, and what the planner's model
    (:func:`rnnbench.kernels.plan.kernel_resources`) says it needs. ``fits``: within the target's
    limits, no spill accessed on the per-step path (``step_spill_accesses``, read from the SASS
    where ``spill_bytes`` is not 0), and the model not below what was compiled."""

    config: KernelConfig
    target: str
    shared_bytes: int
    registers: int
    spill_bytes: int
    fits: bool
    model_shared_bytes: int = 0
    model_registers: int = 0
    #: local-memory loads and stores on the per-step path (0 without spills)
    step_spill_accesses: int = 0
    #: shared-memory wavefronts its ``ldmatrix`` loads take a step beyond one a matrix, all warps
    #: (:func:`rnnbench.kernels.shared_layouts.extra_wavefronts`; 0: no bank conflicts); the cost
    #: model's, not a column of the resource tables
    ldsm_extra_wavefronts: float = 0.0

    def as_row(self) -> dict:
        """The configuration's fields followed by the resources, as one flat table row."""
        row = asdict(self.config)
        row.update({name: getattr(self, name) for name in ("target", "shared_bytes", "registers", "spill_bytes",
                                                            "step_spill_accesses", "fits", "model_shared_bytes",
                                                            "model_registers")})
        return row


def shipped_configs(arch: int) -> list[KernelConfig]:
    """Every configuration the heuristic can launch on an ``sm_<arch>`` GPU of up to
    :data:`COOPERATIVE_SMS` multiprocessors: each cell, dtype, fp32 precision, layout (hidden size
    and batch block, for a wide batch both its 16-row blocks and its wide ones, which a GPU of fewer
    SMs plans), path, direction and variant (:data:`VARIANTS`), without repeats. Cooperative
    layouts depend on the target (sm_90 holds larger weight slices per program than sm_80). Each
    hidden size of :data:`HIDDEN_SIZES` (all divisible by 16) is planned and compiled as it runs,
    and so is the size one below it (any other ``H``: not specialised by Triton, and planned by the
    rules for such sizes, e.g. the wide LSTM forward's warps)."""
    configs = []
    for cell in GATES:
        for dtype_name, dtype in DTYPES.items():
            # fp32 multiplies in TF32 or in full fp32 ("ieee"), following cudnn.allow_tf32
            for precision in ("tf32", "ieee") if dtype == torch.float32 else ("tf32",):
                for hidden in (size for goal in HIDDEN_SIZES for size in (goal, goal - 1)):
                    divisible = hidden % HIDDEN_SPECIALISATION == 0
                    for batch in BATCHES:
                        for path in PATHS:
                            for direction in DIRECTIONS:
                                if cell == "rnn" and direction == "fwd_train":
                                    continue  # the RNN forward has no training variant
                                # with fewer SMs than COOPERATIVE_SMS a wide batch keeps its wide blocks
                                # where 132 SMs take the B <= 16 layout (plan.narrow_batch_blocks): both
                                for narrow in (True, False):
                                    try:
                                        plan = plan_recurrence(cell, hidden, batch, dtype, path, COOPERATIVE_SMS,
                                                               arch=arch, backward=direction == "bwd",
                                                               allow_narrow=narrow)
                                    except PathUnavailable:  # W_hh does not fit a persistent program, or a
                                        continue              # cooperative grid is never co-resident on sm_<arch>
                                    configs.extend(KernelConfig.from_plan(plan, dtype_name, direction, precision,
                                                                          directions, lengths, divisible)
                                                   for directions, lengths in VARIANTS)
    return list(dict.fromkeys(configs))


#: the Gluon LSTM kernels' table (``rnnbench kernels --gluon``): their goal hidden sizes and batches
GLUON_HIDDEN_SIZES = (256, 512, 768, 1024)
GLUON_BATCHES = (16, 64)
GLUON_DTYPES = ("bfloat16", "float16")


def gluon_configs(arch: int = 90) -> list[KernelConfig]:
    """The configurations :func:`rnnbench.kernels.plan.plan_gluon` launches for the hidden sizes
    :data:`GLUON_HIDDEN_SIZES` and batches :data:`GLUON_BATCHES` on :data:`COOPERATIVE_SMS`
    multiprocessors (inference and training forward and the backward, both :data:`VARIANTS`), and
    the forwards with the input projection fused (input size = hidden size; without lengths) where
    :func:`rnnbench.kernels.plan.gluon_input_tiles` allows it, whether or not the switch
    ``GLUON_FUSED_INPUT`` is on. Not part of :func:`shipped_configs`: where ``auto`` takes the Gluon
    forward, the AOT tests compile these."""
    configs = []
    for dtype_name in GLUON_DTYPES:
        dtype = DTYPES[dtype_name]
        for hidden in GLUON_HIDDEN_SIZES:
            for batch in GLUON_BATCHES:
                for directions, lengths in VARIANTS:
                    for backward, kernel_directions in ((False, ("fwd", "fwd_train")), (True, ("bwd",))):
                        try:
                            plan = plan_gluon("lstm", hidden, batch, dtype, COOPERATIVE_SMS, arch=arch,
                                              directions=directions, backward=backward)
                        except PathUnavailable:
                            continue
                        plans = [plan]
                        fused = gluon_input_tiles(plan, hidden, dtype, arch, COOPERATIVE_SMS, fuse=True)
                        if not backward and not lengths and fused:
                            plans.append(replace(plan, input_tiles=fused))
                        configs.extend(KernelConfig.from_plan(each, dtype_name, direction, directions=directions,
                                                              lengths=lengths)
                                       for each in plans for direction in kernel_directions)
    return list(dict.fromkeys(configs))


def compile_config(config: KernelConfig, arch: int) -> KernelResources:
    """Compile ``config`` for ``sm_<arch>`` and read back its resources."""
    return _resources(config, arch, compile_kernel(config, arch))


def compile_ptx(config: KernelConfig, arch: int) -> tuple[KernelResources, str]:
    """Resources and PTX text of ``config`` compiled for ``sm_<arch>`` (a job for :func:`compile_all`:
    tests check which instructions a kernel really uses)."""
    compiled = compile_kernel(config, arch)
    return _resources(config, arch, compiled), compiled.asm["ptx"]


def compile_sass(config: KernelConfig, arch: int) -> tuple[KernelResources, str]:
    """Resources and SASS text of ``config`` compiled as it runs (see :mod:`rnnbench.kernels.cost`)."""
    from rnnbench.kernels.sass import disassemble

    compiled = compile_kernel(config, arch)
    return _resources(config, arch, compiled), disassemble(compiled.asm["cubin"])


def compile_kernel(config: KernelConfig, arch: int):
    """The ``triton.compile`` result of ``config`` for ``sm_<arch>``, specialised as it runs: pointers
    16-byte aligned and, with ``config.hidden_divisible``, ``H`` divisible by 16."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if config.path == GLUON:  # only hidden sizes divisible by 16 (plan_gluon), which Triton specialises
        if config.direction == "bwd":
            from rnnbench.kernels.gluon_lstm_backward import compile_backward

            return compile_backward(config.plan, DTYPES[config.dtype], config.lengths, arch)
        from rnnbench.kernels.gluon_lstm import compile_forward

        return compile_forward(config.plan, DTYPES[config.dtype], config.direction == "fwd_train", config.lengths, arch)
    fn = _kernel_function(config.kernel)
    direction = "bwd" if config.direction == "bwd" else "fwd"
    data = TRITON_TYPES[config.dtype]
    signature = {name: "*" + (data if kind == "data" else kind) for name, kind in KERNEL_POINTERS[(config.cell, direction)]}
    signature.update({name: "i32" for name in ("T", "B", "H", "w_stride", "phase", "first_direction")})
    constexprs = {"BLOCK_B": config.block_b, "BLOCK_H": config.block_h, "H_PAD": config.h_pad,
                  "K_SPLIT": config.k_split, "K_CHUNKS": config.k_chunks, "MODE": MODE_NAMES[config.path],
                  "DOT_PRECISION": config.precision, "DIRECTIONS": config.directions, "HAS_LENGTHS": config.lengths,
                  "POLL": config.poll, "POLL_ORDER": POLL_ORDERS[config.poll_order], "POLL_VECTOR": config.poll_vector,
                  "POLL_FIRST_WARP": switches.GRID_POLL_FIRST_WARP}
    if config.cell == "lstm" and direction == "fwd":
        constexprs["TRAINING"] = config.direction == "fwd_train"
        constexprs["M_SPLIT"] = config.m_split
    if config.cell == "rnn":
        constexprs["RELU"] = False
    signature.update({name: "constexpr" for name in constexprs})
    max_registers = min(255, REGISTER_FILE // (32 * config.num_warps))
    options = {"num_warps": config.num_warps, "num_stages": NUM_STAGES, "maxnreg": max_registers}
    if config.path == "cooperative":
        options["launch_cooperative_grid"] = True
    # at run time Triton specialises pointers that are 16-byte aligned (every buffer the layers pass),
    # the weight row stride (always a multiple of 16: launch.aligned_weight_rows) and an H divisible
    # by 16 (HIDDEN_SPECIALISATION): the tables hold both compilations of H (shipped_configs)
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name, kind in signature.items()
             if kind.startswith("*") or name == "w_stride"}
    if config.hidden_divisible:
        attrs[(fn.arg_names.index("H"),)] = [["tt.divisibility", HIDDEN_SPECIALISATION]]
    return triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                          target=GPUTarget("cuda", arch, 32), options=options)


def _resources(config: KernelConfig, arch: int, compiled) -> KernelResources:
    registers, spill = cubin_resources(compiled.asm["cubin"])
    step_spills = step_local_accesses(compiled.asm["cubin"]) if spill else 0
    shared = int(compiled.metadata.shared)
    model = kernel_resources(config.cell, config.plan, DTYPES[config.dtype], config.direction == "bwd")
    fits = (shared <= SHARED_MEMORY_LIMIT[arch] and step_spills == 0 and registers * 32 * config.num_warps <= REGISTER_FILE
            and model.shared_bytes >= shared and model.registers >= registers)
    return KernelResources(config, f"sm_{arch}", shared, registers, spill, fits, model.shared_bytes, model.registers,
                           step_spills, extra_wavefronts(compiled.asm["ttgir"]))


def compile_all(arch: int, configs: list[KernelConfig] | None = None, workers: int | None = None,
                job=compile_config) -> list:
    """``job(config, arch)`` (default :func:`compile_config`) for ``configs`` (default: every one
    shipped for ``sm_<arch>``) in parallel processes, in order."""
    if arch not in SHARED_MEMORY_LIMIT:
        raise ValueError(f"target must be one of {', '.join(f'sm_{a}' for a in SHARED_MEMORY_LIMIT)}, got sm_{arch}")
    configs = shipped_configs(arch) if configs is None else configs
    workers = workers or os.cpu_count() or 1
    # fresh worker processes that see no TRITON_INTERPRET, so their kernels are compilable JIT
    # functions even when this process (a test session on a CPU machine) runs the interpreter
    saved = os.environ.pop("TRITON_INTERPRET", None)
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            return list(pool.map(job, configs, [arch] * len(configs)))
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved


def _kernel_function(name: str):
    from rnnbench.kernels import lstm_kernels, rnn_kernels

    module = lstm_kernels if name.startswith("lstm") else rnn_kernels
    return getattr(module, name)


def cubin_resources(cubin: bytes) -> tuple[int, int]:
    """``(registers per thread, stack bytes per thread)`` of the single kernel in ``cubin``."""
    tool = nvidia_tool("cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        report = subprocess.run([tool, "--dump-resource-usage", handle.name], capture_output=True, text=True, check=True).stdout
    match = re.search(r"REG:(\d+)\s+STACK:(\d+)", report)
    if match is None:
        raise RuntimeError(f"cuobjdump reported no resource usage:\n{report}")
    return int(match.group(1)), int(match.group(2))
