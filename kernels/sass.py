"""SASS (the GPU's machine code) of a compiled kernel: disassembly, the per-step path of its time
loop, and what that path executes.

* :func:`disassemble` turns a cubin into text with ``nvdisasm`` (labels and branch targets by name) or,
  failing that, ``cuobjdump -sass`` (targets as addresses); both ship in the Triton wheel
  (``triton/backends/nvidia/bin``, overridable with ``TRITON_NVDISASM_PATH`` /
  ``TRITON_CUOBJDUMP_PATH``). Without either, :class:`SassUnavailable` says where they were looked for.
* :func:`parse` reads either format into :class:`Instruction` s.
* :func:`step_path` finds what one time step executes. The time loop is the outermost loop (a
  branch back to a lower address) whose body holds a matrix instruction; a kernel without one
  (the ``stepwise`` path: one launch per step) is a step from its entry to an ``EXIT``. An
  out-of-line block that a branch detours to and that jumps back to just after that branch (an
  mbarrier wait that was not yet complete retries there) is not a loop, and the step takes the
  in-line path, where the wait succeeds (the model times the wait itself). Inside,
  the path is the one with the most instructions through the loop body with inner loops taken
  once: the branches the recurrent kernels take only on their first or last step (``t == T-1``,
  ``t < 0``) skip work, so the heaviest path is the steady-state step; an inner loop polling a
  global counter is the grid barrier's poll, counted once per step. ``BRA.DIV`` (taken only when
  the warp has diverged, to an out-of-line copy of what follows for divergent threads) is a
  conditional branch whose in-line side is the one a converged warp runs. The barrier's timeout
  report (the kernels' only atomic ``MAX``: :func:`~rnnbench.kernels.primitives.barrier_wait` and
  the tagged exchange's wait write the status word with it after 2 s of waiting) runs only when a
  launch has hung, so the step goes around its block where it can (:attr:`Instruction.reports_timeout`).
* :func:`count` counts per-step instructions by kind (:class:`StepCounts`), global bytes per
  thread, and the longest chain of dependent matrix instructions, following register data flow
  (:func:`reads`, :func:`writes`; register widths from the opcode, e.g. an ``HMMA.16816.F32.BF16``
  writes 4 registers and reads A from 4, B from 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, fields

#: matrix (tensor-core) instructions: warp-level mma.sync, warpgroup wgmma and their integer/fp8/fp64 forms
MMA_OPCODES = frozenset({"HMMA", "IMMA", "DMMA", "BMMA", "HGMMA", "IGMMA", "QGMMA", "BGMMA"})
GLOBAL_LOADS = frozenset({"LDG", "LD"})
GLOBAL_STORES = frozenset({"STG", "ST"})
GLOBAL_ATOMICS = frozenset({"ATOM", "ATOMG", "RED", "REDG"})
#: thread-local memory accesses: what ptxas emits for spilled registers
LOCAL_ACCESSES = frozenset({"LDL", "STL"})
#: asynchronous global -> shared copies by threads (``cp.async``; waited for by ``DEPBAR.LE SB0``)
ASYNC_COPIES = frozenset({"LDGSTS"})
#: tensor-memory-access (TMA) bulk copies into shared memory, issued by one thread for the program
#: and completing on an mbarrier (``SYNCS.PHASECHK.TRANS64.TRYWAIT`` waits for it)
TMA_LOADS = frozenset({"UTMALDG"})
#: instructions without a register result
NO_RESULT = frozenset({
    "ST", "STG", "STS", "STL", "STSM", "RED", "REDG", "BAR", "MEMBAR", "BRA", "EXIT", "BSSY", "BSYNC", "CCTL",
    "ERRBAR", "CGAERRBAR", "NOP", "WARPSYNC", "DEPBAR", "YIELD", "RET", "CALL", "FENCE", "UTMALDG", "UTMASTG",
    "LDGSTS", "LDGDEPBAR", "WARPGROUP", "NANOSLEEP",
})
#: instructions whose results are predicates only
PREDICATE_RESULT = frozenset({"ISETP", "FSETP", "DSETP", "HSETP2", "PSETP", "PLOP3", "UISETP", "UPSETP", "UPLOP3", "FCHK"})

_LINE = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(?:(@!?U?P(?:T|\d))\s+)?([A-Z][A-Za-z0-9_.]*)\s*(.*?)\s*;")  # lower case: HGMMA.64x16x16
_LABEL = re.compile(r"^\s*(\.L\w+):")
_TARGET = re.compile(r"`\((\.L\w+)\)|^(0x[0-9a-fA-F]+)$")
_REGISTER = re.compile(r"(?<![A-Za-z_0-9.])(UR|R|UP|P)(\d+)(\.64)?")
_CONSTANT = re.compile(r"c\[0x0\]\[(0x[0-9a-fA-F]+)\]")


class SassUnavailable(RuntimeError):
    """Neither ``nvdisasm`` nor ``cuobjdump`` can be run (a Triton without its NVIDIA tools)."""


@dataclass(frozen=True)
class Instruction:
    """One SASS instruction: ``@predicate OPCODE operands``; ``target`` is a branch's destination address."""

    address: int
    opcode: str
    operands: tuple[str, ...] = ()
    predicate: str = ""
    target: int | None = None

    @property
    def base(self) -> str:
        """The mnemonic without modifiers (``LDG`` for ``LDG.E.128.STRONG.GPU``)."""
        return self.opcode.split(".", 1)[0]

    @property
    def modifiers(self) -> tuple[str, ...]:
        return tuple(self.opcode.split(".")[1:])

    @property
    def never_runs(self) -> bool:
        """Guarded by an always-false predicate (``@!PT``): an issue slot the scheduler fills, no work."""
        return self.predicate in ("@!PT", "@!UPT") or self.base == "NOP"

    @property
    def reports_timeout(self) -> bool:
        """An atomic ``MAX`` on global memory: the grid barrier's (and the tagged exchange's) timeout
        report, the only atomic max the kernels issue. A cold path: the step never runs it."""
        return self.base in GLOBAL_ATOMICS and "MAX" in self.modifiers

    @property
    def reads_clock(self) -> bool:
        """A read of the global timer (``CS2R R, SR_GLOBALTIMERLO``): where a wait starts timing itself,
        i.e. the tagged exchange's loader entering its slow path (:func:`loader_path`)."""
        return self.base in ("CS2R", "S2R", "S2UR") and any("GLOBALTIMER" in operand for operand in self.operands)

    @property
    def is_mma(self) -> bool:
        return self.base in MMA_OPCODES

    def access_bytes(self) -> int:
        """Bytes per thread of a load, store or atomic, from its size modifier (default 32-bit)."""
        for modifier in self.modifiers:
            if modifier in ("U8", "S8"):
                return 1
            if modifier in ("U16", "S16"):
                return 2
            if modifier == "64":
                return 8
            if modifier == "128":
                return 16
        return 4

    @property
    def strong(self) -> bool:
        """A load coherent at the GPU level (``.STRONG.GPU``, from ``.cg``/acquire): served by L2, never L1."""
        return "STRONG" in self.modifiers


@dataclass(frozen=True)
class StepPath:
    """What one time step executes, in program order."""

    instructions: tuple[Instruction, ...]
    #: True when the step is one iteration of an in-kernel time loop (False: one launch per step)
    in_loop: bool
    #: inner loops on the path that poll a global counter (a grid barrier's wait), each counted once
    poll_loops: int


@dataclass(frozen=True)
class StepCounts:
    """Per-step counts of one warp's path (multiply by warps for a program, by programs for the grid)."""

    instructions: int = 0
    mma: int = 0
    #: longest chain of matrix instructions each depending on the previous one's result
    mma_chain: int = 0
    ldsm: int = 0
    lds: int = 0
    sts: int = 0
    bar: int = 0
    shfl: int = 0
    mufu: int = 0
    global_loads: int = 0
    #: bytes per thread of the global loads (``global_loads_l2``/``_l2_bytes``: the coherent ``.STRONG`` ones)
    global_load_bytes: int = 0
    global_loads_l2: int = 0
    global_load_l2_bytes: int = 0
    global_stores: int = 0
    global_store_bytes: int = 0
    atomics: int = 0
    membar: int = 0
    poll_loops: int = 0
    #: TMA bulk copies (``UTMALDG``) the program issues per step (counted once per warp's path)
    tma_loads: int = 0

    def as_row(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def nvidia_tool(name: str) -> str:
    """Path of ``name`` (``nvdisasm``, ``cuobjdump``) as Triton finds it, or :class:`SassUnavailable`."""
    try:
        from triton import knobs

        return getattr(knobs.nvidia, name).path
    except (ImportError, AttributeError, RuntimeError):
        pass
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.access(path, os.X_OK):
        raise SassUnavailable(
            f"{name} not found at {path} (Triton {triton.__version__} ships it with its NVIDIA backend); "
            f"set TRITON_{name.upper()}_PATH to a CUDA toolkit's {name}"
        )
    return path


def disassemble(cubin: bytes) -> str:
    """SASS text of ``cubin``: ``nvdisasm -c`` if present, else ``cuobjdump -sass``."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        try:
            command = [nvidia_tool("nvdisasm"), "-c", handle.name]
        except SassUnavailable:
            command = [nvidia_tool("cuobjdump"), "-sass", handle.name]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def parse(text: str) -> list[Instruction]:
    """Instructions of the first function in ``text`` (nvdisasm or cuobjdump output), in address order."""
    labels: dict[str, int] = {}
    pending: list[str] = []
    raw: list[tuple[int, str, str, str]] = []
    for line in text.splitlines():
        label = _LABEL.match(line)
        if label:
            pending.append(label.group(1))
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        address = int(match.group(1), 16)
        for name in pending:
            labels[name] = address
        pending = []
        raw.append((address, match.group(2) or "", match.group(3), match.group(4)))
    instructions = []
    for address, predicate, opcode, rest in raw:
        operands = tuple(part.strip() for part in rest.split(",")) if rest else ()
        target = None
        if opcode.split(".")[0] == "BRA" and operands:
            found = _TARGET.search(operands[-1])
            if found is None:
                raise ValueError(f"branch at {address:#x} has no target I can read: {opcode} {rest}")
            target = labels[found.group(1)] if found.group(1) else int(found.group(2), 16)
        instructions.append(Instruction(address, opcode, operands, predicate, target))
    if not instructions:
        raise ValueError("no SASS instructions found in the text")
    return instructions


def _loops(instructions: list[Instruction], index: dict[int, int]) -> list[tuple[int, int]]:
    """``(start, end)`` positions of every loop (back edge) of the kernel."""
    return [(index[ins.target], i) for i, ins in enumerate(instructions)
            if ins.target is not None and ins.target < ins.address  # a branch to itself is the trap after EXIT
            and not _detour(instructions, index, i)]


def loops(instructions: list[Instruction]) -> list[tuple[Instruction, ...]]:
    """The instructions of every loop of the kernel, in program order from its head to its back
    edge (the out-of-line retries of its waits, which branch back into a loop, are not loops)."""
    index = {ins.address: i for i, ins in enumerate(instructions)}
    return [tuple(instructions[start:end + 1]) for start, end in _loops(instructions, index)]


def _loop_step(instructions: list[Instruction], index: dict[int, int], loops: list[tuple[int, int]], path: list[int],
               in_loop: bool) -> StepPath:
    """The :class:`StepPath` of ``path`` (positions), with the polling loops nested in it."""
    inner = [(s, e) for s, e in loops if (s, e) != (path[0], path[-1]) and path[0] <= s and e <= path[-1]]
    polls = sum(1 for s, e in inner if any(_polls(ins) for ins in instructions[s:e + 1]))
    return StepPath(tuple(instructions[i] for i in path), in_loop, polls)


def loop_path(instructions: list[Instruction]) -> StepPath:
    """One iteration of the kernel's outermost loop, with or without MMAs (the latency probes of
    :mod:`rnnbench.kernels.latency_probe`: one loop of one primitive)."""
    index = {ins.address: i for i, ins in enumerate(instructions)}
    loops = _loops(instructions, index)
    if not loops:
        raise ValueError("the kernel has no loop")
    start, end = max(loops, key=lambda loop: loop[1] - loop[0])
    return _loop_step(instructions, index, loops, _warm_path(instructions, index, start, {end}), True)


def step_path(instructions: list[Instruction]) -> StepPath:
    """The instructions one time step executes (see the module docstring)."""
    index = {ins.address: i for i, ins in enumerate(instructions)}
    loops = _loops(instructions, index)
    time_loops = [(start, end) for start, end in loops if any(ins.is_mma for ins in instructions[start:end + 1])]
    # a warp-specialised kernel has a loop with MMAs per partition (and one around the partitions'
    # dispatch): the recurrence's is the one that stores its step's output to global memory
    storing = [(start, end) for start, end in time_loops
               if any(ins.base in GLOBAL_STORES for ins in instructions[start:end + 1])]
    if time_loops:
        start, end = max(storing or time_loops, key=lambda loop: loop[1] - loop[0])
        path = _warm_path(instructions, index, start, {end})
    else:
        start = 0
        exits = {i for i, ins in enumerate(instructions) if ins.base == "EXIT"}
        path = _warm_path(instructions, index, start, exits)
    return _loop_step(instructions, index, loops, path, bool(time_loops))


def loader_path(instructions: list[Instruction], first_load_complete: bool = False) -> StepPath | None:
    """One step of a warp-specialised kernel's loader partition (the tagged exchange's,
    :func:`rnnbench.kernels.gluon_lstm._tagged_loader`): the innermost loop without MMAs that polls
    with strong global loads and arrives on an mbarrier (its poll loop inside arrives on none; the
    loops around it dispatch the partitions), its poll loop walked once; of several loader
    partitions, the longest such loop; None in a kernel without one. ``first_load_complete``: the
    step whose first load finds every word fresh instead, the heaviest path that never reads the
    clock (the slow path starts its timeout there); ValueError where every path does."""
    index = {ins.address: i for i, ins in enumerate(instructions)}
    loops = _loops(instructions, index)
    loaders = [(start, end) for start, end in loops
               if not any(ins.is_mma for ins in instructions[start:end + 1])
               and any(_polls(ins) for ins in instructions[start:end + 1])
               and any(ins.opcode.startswith("SYNCS.ARRIVE") for ins in instructions[start:end + 1])]
    if not loaders:
        return None
    # the innermost such loops (the loops around them dispatch the partitions), one per loader
    # partition: the longest, whose warp has the most tiles
    innermost = [loop for loop in loaders
                 if not any(other != loop and loop[0] <= other[0] and other[1] <= loop[1] for other in loaders)]
    start, end = max(innermost, key=lambda loop: loop[1] - loop[0])
    if first_load_complete:
        # a traced kernel's stamps read the timer on every path (rnnbench.kernels.trace_events)
        stamps = trace_stamps(instructions[start:end + 1])
        clock = frozenset(i for i in range(start, end + 1) if (instructions[i].reads_clock and i - start not in stamps)
                          or instructions[i].reports_timeout)
        return _loop_step(instructions, index, loops, _heaviest_path(instructions, index, start, {end}, clock), True)
    return _loop_step(instructions, index, loops, _warm_path(instructions, index, start, {end}), True)


def copier_path(instructions: list[Instruction]) -> StepPath | None:
    """One poll of a warp-specialised kernel's copier partition (the streamed Gluon backward's,
    :func:`rnnbench.kernels.gluon_lstm_backward._copier`): the innermost loop without MMAs that
    polls with strong global loads and issues TMA copies, walked once along its heaviest path
    around the timeout's report (the poll that finds every producer arrived and issues every
    copy); None in a kernel without one."""
    index = {ins.address: i for i, ins in enumerate(instructions)}
    copiers = [(start, end) for start, end in _loops(instructions, index)
               if not any(ins.is_mma for ins in instructions[start:end + 1])
               and any(_polls(ins) for ins in instructions[start:end + 1])
               and any(ins.base in TMA_LOADS for ins in instructions[start:end + 1])]
    if not copiers:
        return None
    start, end = min(copiers, key=lambda loop: loop[1] - loop[0])
    return StepPath(tuple(instructions[i] for i in _warm_path(instructions, index, start, {end})), False, 0)


def trace_stamps(instructions) -> dict[int, int]:
    """The trace stamps among ``instructions`` (a traced kernel's, :mod:`rnnbench.kernels.trace_events`):
    ``{position of the clock or timer read: byte offset of the store that records it}``. A read
    (``CS2R R, SR_CLOCKLO`` or ``SR_GLOBALTIMERLO``) is a stamp where its value reaches a 64-bit
    global store within :data:`STAMP_WINDOW` instructions, unchanged or through copies (``SEL``,
    ``MOV``, ``IMAD.MOV``: a read that waits for a value is two predicated reads, which ptxas turns
    into two reads and selects, :func:`rnnbench.kernels.gluon_primitives.clock64_after`);
    ``STG.E.64 [R.64+0x18], R`` records event 3 where the store's base is the step's row. Reads
    whose value goes elsewhere (a timeout's start) are not stamps."""
    stamps = {}
    for i, ins in enumerate(instructions):
        if ins.base not in ("CS2R", "S2R", "S2UR") or not any(
                clock in operand for operand in ins.operands for clock in ("SR_CLOCKLO", "SR_GLOBALTIMERLO")):
            continue
        holding = set(writes(ins))  # the registers holding the value read
        for later in instructions[i + 1:i + 1 + STAMP_WINDOW]:
            if later.base in GLOBAL_STORES and later.access_bytes() == 8 and later.operands[-1] in holding:
                stamps[i] = address_offset(later.operands[0])
                break
            written = set(writes(later))
            copies = later.base in ("SEL", "MOV") or later.opcode.startswith("IMAD.MOV")
            holding = holding | written if copies and holding & set(reads(later)) else holding - written
            if not holding:
                break
    return stamps


#: instructions after a clock read within which its stamp's store comes
STAMP_WINDOW = 128


def address_offset(operand: str) -> int:
    """The immediate byte offset of a memory operand (``desc[UR4][R152.64+0x18]`` -> 24,
    ``[R12+URZ+0x13900]`` -> 0x13900; 0 without one)."""
    last = operand[operand.rfind("["):].strip("[]").split("+")[-1]
    return int(last, 16) if last.startswith("0x") else 0


def _detour(instructions: list[Instruction], index: dict[int, int], i: int) -> bool:
    """Whether the back edge at ``i`` returns from an out-of-line block: the instruction before its
    target (past ``NOP`` padding) branches to the start of the straight-line block that holds it (an
    mbarrier wait that failed in line retries there and jumps back to where it left), or only
    ``BRA.DIV`` before its target enter that block (a divergent warp's collective fallback of the
    shuffles or the barrier after them, which rejoins the converged code further on). Not a loop of
    the kernel."""
    start = i
    while start > 0 and not _ends_block(instructions[start - 1]):
        start -= 1
    target = index[instructions[i].target]
    before = target - 1
    while before >= 0 and instructions[before].base == "NOP":
        before -= 1
    if before >= 0 and instructions[before].target == instructions[start].address:
        return True
    entries = [p for p, ins in enumerate(instructions) if ins.target == instructions[start].address and p != i]
    return bool(entries) and all("DIV" in instructions[p].modifiers and p < target for p in entries)


def _ends_block(ins: Instruction) -> bool:
    """Control never falls through ``ins``: an unconditional branch or exit."""
    return ins.base in ("BRA", "EXIT", "RET") and not ins.predicate


def _polls(ins: Instruction) -> bool:
    return (ins.base in GLOBAL_LOADS and ins.strong) or ins.base in ("ATOM", "ATOMG")


def _successors(instructions: list[Instruction], index: dict[int, int], i: int) -> list[int]:
    ins = instructions[i]
    following = [i + 1] if i + 1 < len(instructions) else []
    if ins.base == "EXIT" or ins.base == "RET":
        return following if ins.predicate and not ins.never_runs else []
    if ins.target is not None:
        taken = [index[ins.target]]
        return taken if not ins.predicate and "DIV" not in ins.modifiers else following + taken
    return following


def _warm_path(instructions: list[Instruction], index: dict[int, int], start: int, ends: set[int]) -> list[int]:
    """:func:`_heaviest_path` around the timeout report's block (:attr:`Instruction.reports_timeout`),
    or through it where no path avoids it (a report predicated in straight-line code)."""
    cold = frozenset(i for i in range(start, max(ends) + 1) if instructions[i].reports_timeout)
    if cold:
        try:
            return _heaviest_path(instructions, index, start, ends, avoid=cold)
        except ValueError:
            pass
    return _heaviest_path(instructions, index, start, ends)


def _heaviest_path(instructions: list[Instruction], index: dict[int, int], start: int, ends: set[int],
                   avoid: frozenset[int] = frozenset()) -> list[int]:
    """Longest path (in instructions) from ``start`` to one of ``ends`` over forward edges only
    (backward edges are loops: taken once by walking through their body), through none of ``avoid``."""
    stop = max(ends)
    best = {start: 1}
    came_from: dict[int, int] = {}
    for i in range(start, stop + 1):
        if i not in best or i in avoid:
            continue
        if i in ends and i == stop:
            break
        for j in _successors(instructions, index, i):
            if i < j <= stop and best[i] + 1 > best.get(j, 0):
                best[j], came_from[j] = best[i] + 1, i
    reached = [end for end in ends if end in best]
    if not reached:
        raise ValueError(f"no path from the instruction at {instructions[start].address:#x} to the step's end")
    node = max(reached, key=lambda end: best[end])
    path = [node]
    while node != start:
        node = came_from[node]
        path.append(node)
    return path[::-1]


def count(path: StepPath) -> StepCounts:
    """Per-warp counts of ``path`` (see :class:`StepCounts`)."""
    totals = {field.name: 0 for field in fields(StepCounts)}
    for ins in path.instructions:
        if ins.never_runs or ins.reports_timeout:
            continue
        totals["instructions"] += 1
        base = ins.base
        key = {"LDSM": "ldsm", "LDS": "lds", "STS": "sts", "BAR": "bar", "SHFL": "shfl", "MUFU": "mufu",
               "MEMBAR": "membar"}.get(base)
        if key:
            totals[key] += 1
        if ins.is_mma:
            totals["mma"] += 1
        if base in TMA_LOADS:
            totals["tma_loads"] += 1
        if base in GLOBAL_LOADS | ASYNC_COPIES:
            totals["global_loads"] += 1
            totals["global_load_bytes"] += ins.access_bytes()
            if ins.strong and base in GLOBAL_LOADS:
                totals["global_loads_l2"] += 1
                totals["global_load_l2_bytes"] += ins.access_bytes()
        elif base in GLOBAL_STORES:
            totals["global_stores"] += 1
            totals["global_store_bytes"] += ins.access_bytes()
        elif base in GLOBAL_ATOMICS:
            totals["atomics"] += 1
    totals["mma_chain"] = mma_chain(path.instructions)
    totals["poll_loops"] = path.poll_loops
    return StepCounts(**totals)


def sleep_ns(path: StepPath) -> int:
    """Nanoseconds the path sleeps (``NANOSLEEP`` with an immediate: the tagged exchange's poll
    delay, :func:`rnnbench.kernels.switches.tagged_poll_delay`; the hardware sleeps 0 to twice that)."""
    return sum(int(ins.operands[0], 0) for ins in path.instructions
               if ins.base == "NANOSLEEP" and ins.operands and not ins.never_runs)


def local_accesses(path: StepPath) -> int:
    """Local-memory loads and stores (spilled registers) on ``path``: what a spill costs every step.
    A spill stored before the time loop and reloaded after it (a value needed only at the end) has none."""
    return sum(1 for ins in path.instructions if ins.base in LOCAL_ACCESSES)


def step_local_accesses(cubin: bytes) -> int:
    """:func:`local_accesses` on the per-step path of ``cubin``'s kernel."""
    return local_accesses(step_path(parse(disassemble(cubin))))


def mma_chain(instructions) -> int:
    """Longest chain of matrix instructions along register data flow in ``instructions``."""
    depth_of: dict[str, int] = {}
    longest = 0
    for ins in instructions:
        if ins.never_runs:
            continue
        depth = max((depth_of.get(register, 0) for register in reads(ins)), default=0) + int(ins.is_mma)
        for register in writes(ins):
            depth_of[register] = depth
        longest = max(longest, depth)
    return longest


def load_sources(instructions) -> dict[int, frozenset[int]]:
    """For each global load (by address), the constant-bank offsets (kernel parameters) its address
    is computed from, following register data flow in program order; loaded values carry none."""
    origin: dict[str, frozenset[int]] = {}
    sources: dict[int, frozenset[int]] = {}
    for ins in instructions:
        if ins.never_runs:
            continue
        if ins.base in GLOBAL_LOADS:
            address = [register for operand in ins.operands if "[" in operand
                       for register in _address_registers(operand)]
            sources[ins.address] = frozenset().union(*(origin.get(register, frozenset()) for register in address))
            derived = frozenset()
        else:
            constants = frozenset(int(offset, 16) for operand in ins.operands for offset in _CONSTANT.findall(operand))
            derived = constants.union(*(origin.get(register, frozenset()) for register in reads(ins)))
        for register in writes(ins):
            origin[register] = derived
    return sources


def _address_registers(operand: str) -> list[str]:
    """Registers forming the address in ``desc[UR14][R24.64+0x100]`` (not the memory descriptor)."""
    registers = []
    for kind, number, wide in _REGISTER.findall(re.sub(r"desc\[[^\]]*\]", "", operand)):
        registers.extend(_expand(f"{kind}{number}", 2 if wide else 1))
    return registers


# ---- register data flow ------------------------------------------------------------------------

def _is_predicate(operand: str) -> bool:
    return re.fullmatch(r"!?U?P(T|\d+)", operand) is not None


def _expand(name: str, width: int) -> list[str]:
    kind, number = re.fullmatch(r"(UR|R|UP|P)(\d+)", name).groups()
    return [f"{kind}{int(number) + k}" for k in range(width)]


def _mma_widths(ins: Instruction) -> tuple[int, int, int]:
    """Registers per thread of an ``HMMA``'s (D and C, A, B) for its shape and operand type; of an
    ``HGMMA`` (``64xNx16``, one warpgroup of 128 threads): the accumulator, A when it comes from
    registers, and 0 for B (always a shared-memory descriptor)."""
    element_bits = 32 if "TF32" in ins.modifiers else 16
    accumulator_bits = 32 if "F32" in ins.modifiers[1:2] else 16
    if ins.base == "HGMMA":
        dims = next((m for m in ins.modifiers if re.fullmatch(r"\d+x\d+x\d+", m)), "64x16x16")
        m, n, k = map(int, dims.split("x"))
        return m * n * accumulator_bits // (128 * 32), max(1, m * k * element_bits // (128 * 32)), 0
    shape = next((m for m in ins.modifiers if re.fullmatch(r"\d{4,5}", m)), None)
    if ins.base != "HMMA" or shape is None:
        return 4, 4, 2
    m, n, k = int(shape[:2]), int(shape[2]), int(shape[3:])
    return (m * n * accumulator_bits // 1024, max(1, m * k * element_bits // 1024), max(1, k * n * element_bits // 1024))


def hgmma_shared_bytes(ins: Instruction) -> int:
    """Bytes of shared memory one warpgroup MMA (``HGMMA.MxNxK``, issued by the warpgroup's four
    warps together) reads for its operands: B (``K x N``) always, A (``M x K``) too when it comes
    from a shared-memory descriptor (``HGMMA ... R24, gdesc[UR8], R24``) rather than registers
    (``HGMMA ... R24, R152, gdesc[UR8], R24``). 0 for any other instruction."""
    if ins.base != "HGMMA":
        return 0
    dims = next((m for m in ins.modifiers if re.fullmatch(r"\d+x\d+x\d+", m)), "64x16x16")
    m, n, k = map(int, dims.split("x"))
    element_bytes = 4 if "TF32" in ins.modifiers else 1 if any(t in ins.modifiers for t in ("E4M3", "E5M2")) else 2
    sources = ins.operands[_result_operands(ins):]
    a_in_shared = bool(sources) and sources[0].startswith("gdesc")
    return (m * k * a_in_shared + k * n) * element_bytes


def _data_width(ins: Instruction) -> int:
    """Registers per thread moved by a load, store or atomic (``LDSM.16.M88.4``: 4)."""
    if ins.base == "LDSM":
        return int(ins.modifiers[-1]) if ins.modifiers[-1].isdigit() else 1
    return max(1, ins.access_bytes() // 4)


def _result_width(ins: Instruction) -> int:
    if ins.base in ("HMMA", "HGMMA"):
        return _mma_widths(ins)[0]
    if ins.base in ("LDC", "ULDC"):
        return 2 if "64" in ins.modifiers else 1
    if ins.base in ("LDG", "LD", "LDS", "LDSM", "LDL", "ATOM", "ATOMG", "ATOMS"):
        return _data_width(ins)
    if ins.base == "CS2R" or "WIDE" in ins.modifiers:
        return 2
    return 1


def _result_operands(ins: Instruction) -> int:
    """How many leading operands are results: predicates, then (unless the instruction only sets
    predicates) one register and the predicates after it (``IADD3 R18, P3, R19, ...``)."""
    if ins.base in NO_RESULT:
        return 0
    operands = ins.operands
    position = 0
    while position < len(operands) and _is_predicate(operands[position]):
        position += 1
    if ins.base not in PREDICATE_RESULT and position < len(operands) and re.fullmatch(r"U?R(\d+|Z)", operands[position].split(".")[0]):
        position += 1
        while position < len(operands) and _is_predicate(operands[position]):
            position += 1
    return position


def writes(ins: Instruction) -> list[str]:
    """Registers and predicates ``ins`` writes (the discards ``RZ``, ``PT`` excluded)."""
    written: list[str] = []
    for operand in ins.operands[:_result_operands(ins)]:
        register = re.fullmatch(r"(U?R|U?P)(\d+)", operand.split(".")[0])
        if register is not None:
            width = 1 if register.group(1).endswith("P") else _result_width(ins)
            written.extend(_expand(register.group(0), width))
    return written


def reads(ins: Instruction) -> list[str]:
    """Registers and predicates ``ins`` reads, its guard predicate included. An address operand reads
    one register, or two for ``R2.64`` and a ``desc[UR4]`` pair; data operands read as many as
    the instruction moves."""
    read: list[str] = []
    if ins.predicate and not ins.never_runs:
        read.append(ins.predicate.lstrip("@!"))
    sources = ins.operands[_result_operands(ins):]
    widths = [1] * len(sources)
    if ins.base == "HMMA" and len(sources) >= 3:
        accumulator, a, b = _mma_widths(ins)
        widths[:3] = [a, b, accumulator]
    elif ins.base == "HGMMA":  # [A registers,] gdesc[...], accumulator[, scoreboard]
        accumulator, a, _ = _mma_widths(ins)
        descriptor = next((i for i, operand in enumerate(sources) if operand.startswith("gdesc")), 0)
        widths = [a if i < descriptor else accumulator if i == descriptor + 1 else 1 for i in range(len(sources))]
    elif ins.base in GLOBAL_STORES | GLOBAL_ATOMICS | {"STS", "STL"} and sources:
        widths[-1] = _data_width(ins)
    elif "WIDE" in ins.modifiers and sources:
        widths[-1] = 2
    for operand, width in zip(sources, widths):
        in_address = "[" in operand
        for kind, number, wide in _REGISTER.findall(operand):
            if wide or (in_address and kind == "UR" and operand.startswith(("desc", "gdesc"))):
                span = 2
            else:
                span = 1 if in_address else width
            read.extend(_expand(f"{kind}{number}", span))
    return read
