"""A small interpreter of the PTX subset rnnbench's generated inline assembly uses, for one thread, so
its logic is tested on a CPU (the GPU tests run the same text through ptxas).

What it knows: ``.reg`` declarations (ignored: registers are created when written), labels, ``{ }``,
guards ``@%p`` / ``@!%p``, ``mov`` (also of ``%globaltimer``), ``xor`` / ``and`` / ``or`` / ``add`` /
``sub`` / ``max`` (also ``.u16x2``) / ``shr``, ``setp.{eq,ne,gt,lt}``, ``selp``, ``bra``,
``ld.volatile.global.v4.b32`` and ``ld.relaxed.gpu.global.b32`` (from :class:`Memory`) and
``red.relaxed.gpu.global.max.s32``.
Integers are unsigned modulo the instruction's width; ``$n`` are the asm's operands (inputs given,
outputs read back after the run). Anything else raises, so a change to the generator that this
interpreter does not know fails loudly instead of passing untested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WIDTH = {"b32": 32, "u32": 32, "s32": 32, "b64": 64, "u64": 64, "u16x2": 32}


@dataclass
class Memory:
    """Global memory of 32-bit words by byte address: ``words[address]`` is a list of the values
    successive loads of that word return (the last one repeats), so a test says when a word
    becomes fresh; ``loads`` counts loads per address; ``timer_step_ns`` is what each
    ``%globaltimer`` read adds."""

    words: dict[int, list[int]]
    timer_step_ns: int = 1
    loads: dict[int, int] = field(default_factory=dict)
    timer_ns: int = 0

    def load(self, address: int) -> int:
        if address not in self.words:
            raise KeyError(f"load of an address the test did not set: {address:#x}")
        count = self.loads.get(address, 0)
        self.loads[address] = count + 1
        values = self.words[address]
        return values[min(count, len(values) - 1)] % 2**32

    def store_max(self, address: int, value: int) -> None:
        current = self.load(address)
        signed = lambda v: v - 2**32 if v >= 2**31 else v  # noqa: E731
        self.words[address] = [max(signed(current), signed(value)) % 2**32]

    def globaltimer(self) -> int:
        self.timer_ns += self.timer_step_ns
        return self.timer_ns


_INSTRUCTION = re.compile(r"^(?:@(!?)(%\w+)\s+)?([\w.]+)\s*(.*?);$")


def run(asm: str, operands: dict[int, int], memory: Memory, max_steps: int = 100_000,
        executed: list[str] | None = None) -> dict[str, int]:
    """Execute ``asm`` (``inline_asm_elementwise`` text, one invocation) with ``$n`` bound to
    ``operands[n]``; returns every register by name (``$n`` included) after the run. ``executed``,
    when given, receives the opcode of every instruction run (a guarded one only where its guard
    held)."""
    lines = [line.strip() for line in asm.replace("\\n", "\n").splitlines()]
    program, labels = [], {}
    for line in lines:
        if line in ("{", "}", "") or line.startswith(".reg"):
            continue
        if line.endswith(":"):
            labels[line[:-1]] = len(program)
            continue
        match = _INSTRUCTION.match(line)
        if match is None:
            raise ValueError(f"not an instruction this interpreter reads: {line!r}")
        program.append(match.groups())
    registers = {f"${n}": value for n, value in operands.items()}

    def value(token: str, width: int) -> int:
        token = token.strip()
        if token == "%globaltimer":
            return memory.globaltimer()
        if re.fullmatch(r"-?\d+", token):
            return int(token) % 2**width
        if token not in registers:
            raise KeyError(f"read of {token} before any write")
        return registers[token] % 2**width

    def address(token: str) -> int:
        inside = token.strip().removeprefix("[").removesuffix("]")
        base, _, offset = inside.partition("+")
        return value(base, 64) + (int(offset) if offset else 0)

    pc, steps = 0, 0
    while pc < len(program):
        steps += 1
        if steps > max_steps:
            raise RuntimeError("the asm ran past max_steps (a loop that never ends?)")
        negate, guard, opcode, rest = program[pc]
        pc += 1
        if guard is not None and bool(registers[guard]) == bool(negate):
            continue
        if executed is not None:
            executed.append(opcode)
        parts = opcode.split(".")
        op = parts[0]
        if op == "bra":
            pc = labels[rest.strip()]
            continue
        if op == "ld" and "v4" in parts:
            targets, source = re.fullmatch(r"\{(.*)\}\s*,\s*(\[.*\])", rest).groups()
            base = address(source)
            for i, name in enumerate(t.strip() for t in targets.split(",")):
                registers[name] = memory.load(base + 4 * i)
            continue
        args = [a.strip() for a in rest.split(",")]
        width = _WIDTH[parts[-1]]
        if op == "ld":
            registers[args[0]] = memory.load(address(args[1]))
        elif op == "red" and "max" in parts:
            memory.store_max(address(args[0]), value(args[1], 32))
        elif op == "mov":
            registers[args[0]] = value(args[1], width)
        elif op == "max" and parts[1] == "u16x2":
            a, b = value(args[1], 32), value(args[2], 32)
            registers[args[0]] = max(a & 0xFFFF, b & 0xFFFF) | (max(a >> 16, b >> 16) << 16)
        elif op in ("xor", "and", "or", "add", "sub", "max", "shr"):
            a, b = value(args[1], width), value(args[2], width)
            result = {"xor": a ^ b, "and": a & b, "or": a | b, "add": a + b, "sub": a - b, "max": max(a, b),
                      "shr": a >> b}[op]
            registers[args[0]] = result % 2**width
        elif op == "setp":
            a, b = value(args[1], width), value(args[2], width)
            registers[args[0]] = int({"eq": a == b, "ne": a != b, "gt": a > b, "lt": a < b}[parts[1]])
        elif op == "selp":
            registers[args[0]] = value(args[1], width) if registers[args[3]] else value(args[2], width)
        else:
            raise ValueError(f"an instruction this interpreter does not know: {opcode}")
    return registers
