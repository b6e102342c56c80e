"""ListOps (Nangia & Bowman 2018, NYU generator; operators as in Long Range Arena's code).

An expression is a tree of operators over the digits 0-9, written as NYU's token sequences, e.g.
``[MAX 2 9 [MIN 4 7 ] 0 ]`` (value 9). Operators: ``[MIN``, ``[MAX``, ``[MED`` (the median, rounded
down) and ``[SM`` (sum mod 10), each closed by ``]``. The root is always an operator (NYU's
generator also emits bare digits; those are left out as trivial). Every operator has
``randint(2, max_args)`` arguments; an argument is itself an operator with probability ``op_p``
while the nesting is below ``max_depth`` (the root is depth 1), else a digit. Trees whose length is
outside ``[min_len, seq_len]`` are drawn again.

``seq_len`` = the longest expression in tokens. Token ids: 0 ``<pad>``, 1-10 the digits 0-9, 11-14
the operators, 15 ``]``. Inputs int64 ``(n, S)`` right-padded with ``<pad>`` to the longest
expression drawn (``TaskSpec.lengths`` gives each length). Target int64 ``(n,)``: the value, 10
classes, read after the closing ``]`` of the root.

Baselines: chance 1/10 and the majority class, whose frequency is measured on ``MAJORITY_SAMPLE``
training expressions drawn with a fixed seed (the classes are far from balanced).
Distance: ``seq_len - 1``, from the root operator of the longest expression to its readout.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks.base import Param, Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec
from rnnbench.harness.tasks.vocabulary import PAD, pad_right


def _median(args: list[int]) -> int:
    """The median rounded down, as LRA's ``int(np.median(args))``."""
    ordered, middle = sorted(args), len(args) // 2
    return ordered[middle] if len(args) % 2 else (ordered[middle - 1] + ordered[middle]) // 2


OPERATORS = {"[MIN": min, "[MAX": max, "[MED": _median, "[SM": lambda args: sum(args) % 10}
_EVALUATE = tuple(OPERATORS.values())
VOCABULARY = ("<pad>", *(str(d) for d in range(10)), *OPERATORS, "]")
DIGIT, FIRST_OPERATOR, CLOSE = 1, 11, len(VOCABULARY) - 1
SHORTEST = 4  # "[OP a b ]"
MAJORITY_SAMPLE = 2000
#: rejection sampling gives up after this many tries per requested expression
TRIES_PER_EXPRESSION = 1000


class _TooLong(Exception):
    pass


class _Uniforms:
    """U[0, 1) numbers from ``rng``, drawn in blocks: one generator call per block, not per node."""

    def __init__(self, rng: np.random.Generator, block: int = 4096):
        self.rng, self.block, self.buffer, self.next = rng, block, np.empty(0), 0

    def __call__(self) -> float:
        if self.next == len(self.buffer):
            self.buffer, self.next = self.rng.random(self.block), 0
        self.next += 1
        return self.buffer[self.next - 1]


def _expression(uniform: _Uniforms, depth: int, tokens: list[int], params, longest: int) -> int:
    """Appends one operator's tokens (with its arguments) to ``tokens``; returns its value. Raises
    _TooLong as soon as the expression passes ``longest`` tokens, so no oversized tree is built."""
    op = int(uniform() * len(OPERATORS))
    tokens.append(FIRST_OPERATOR + op)
    args = []
    for _ in range(2 + int(uniform() * (params["max_args"] - 1))):
        if depth < params["max_depth"] and uniform() < params["op_p"]:
            args.append(_expression(uniform, depth + 1, tokens, params, longest))
        else:
            args.append(int(uniform() * 10))
            tokens.append(DIGIT + args[-1])
        if len(tokens) >= longest:  # the closing "]" is still to come
            raise _TooLong
    tokens.append(CLOSE)
    return _EVALUATE[op](args)


def expressions(seq_len: int, n: int, rng: np.random.Generator, params) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` expressions with lengths in ``[min_len, seq_len]``: their token ids and values."""
    uniform = _Uniforms(rng)
    sequences, values = [], []
    for _ in range(TRIES_PER_EXPRESSION * n):
        tokens: list[int] = []
        try:
            value = _expression(uniform, 1, tokens, params, seq_len)
        except _TooLong:
            continue
        if len(tokens) >= params["min_len"]:
            sequences.append(np.array(tokens, dtype=np.int64))
            values.append(value)
            if len(sequences) == n:
                return sequences, np.array(values, dtype=np.int64)
    raise UsageError(f"listops with lengths in [{params['min_len']}, {seq_len}] accepted {len(sequences)} of "
                     f"{TRIES_PER_EXPRESSION * n} trees drawn; widen the range or change max_args, max_depth or op_p")


@lru_cache(maxsize=32)
def majority_fraction(seq_len: int, params_items: tuple) -> float:
    """Frequency of the most common value among ``MAJORITY_SAMPLE`` expressions (fixed seed)."""
    _, values = expressions(seq_len, MAJORITY_SAMPLE, np.random.default_rng(0), dict(params_items))
    return float(np.bincount(values, minlength=10).max() / MAJORITY_SAMPLE)


class ListOps(Task):
    name = "listops"
    params = (
        Param("max_depth", 10, "most nested operators (the root is depth 1)", minimum=1, maximum=100),
        Param("max_args", 5, "most arguments of one operator (at least 2)", minimum=2, maximum=20),
        Param("op_p", 0.25, "probability that an argument below max_depth is an operator", minimum=0.0, maximum=1.0),
        Param("min_len", 1, "shortest expression kept, in tokens", minimum=1),
    )

    def check(self, seq_len, params):
        if seq_len < SHORTEST:
            raise UsageError(f"listops needs seq_len >= {SHORTEST} (the shortest expression '[OP a b ]'), got {seq_len}")
        if params["min_len"] > seq_len:
            raise UsageError(f"listops min_len must be <= seq_len = {seq_len}, got {params['min_len']}")

    def describe(self, seq_len, params):
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("tokens", len(VOCABULARY), vocabulary=VOCABULARY, pad_id=PAD),
            target=TargetSpec("class", 10),
            metrics=("accuracy",),
            baselines=(
                Baseline("chance", "accuracy", 0.1, "a uniform guess of the value"),
                Baseline("majority", "accuracy", majority_fraction(seq_len, tuple(params.items())),
                         f"the most frequent value, measured on {MAJORITY_SAMPLE} expressions"),
            ),
            distance=seq_len - 1, max_steps=seq_len, variable_length=True,
        )

    def sample(self, seq_len, n, rng, split, params):
        sequences, values = expressions(seq_len, n, rng, params)
        return pad_right(sequences), values
