"""Suite files: TOML descriptions of which cases to run, and their expansion into cases.

A suite is ``harness/suites/<name>.toml`` (or any ``.toml`` path)::

    description = "what this suite is for"

    [defaults]                 # optional; every key may also be given per [[cases]] block
    device = "cpu"             # cpu | cuda | auto (cuda if available); the CLI's --device overrides
    dtypes = ["float32"]       # float64 float32 float16 bfloat16 (aliases fp32, fp16, bf16)
    modes = ["fwd", "fwd_bwd"]  # the default; training experiments need ["train"]
    seeds = [0]

    [timing]                   # optional, see rnnbench.harness.cases.TimingOptions
    budget_s = 0.5

    [[cases]]                  # one or more blocks; each expands to the cartesian product of its lists
    experiments = ["speed", "memory"]
    backends = ["numpy", "eager", "torch"]
    families = ["rnn", "lstm"]  # optional: default every family the backends implement
    seq_len = [64, 256]
    batch = [1, 16]
    hidden_size = [64]
    input_size = [64]          # optional: default equal to hidden_size
    task = "random"            # optional: seeded random problems (speed, memory, numerics)

    [cases.params]             # optional: task and experiment parameters; lists expand like the rest
    delay = [10, 20]

Expansion order puts the shape outermost and the backend innermost, so every backend of a shape
runs back to back and the float64 reference of that shape is computed once.

Each case is checked by its experiment (``Experiment.check_case``: a bad case fails the load with
the reason) and then completed by it (``Experiment.prepare_case``: every default parameter written
into ``params``, so a case's identity does not depend on defaults that may change).
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from rnnbench.harness.backends import get_backend
from rnnbench.harness.cases import DEFAULT_MODES, MODES, RANDOM_TASK, Case, TimingOptions, freeze_params
from rnnbench.harness.dtypes import canonical_dtype
from rnnbench.harness.errors import UsageError
from rnnbench.harness.experiments import EXPERIMENTS
from rnnbench.harness.problems import FAMILIES
from rnnbench.harness.registry import DEVICES

SUITE_DIR = Path(__file__).parent / "suites"
TOP_LEVEL_KEYS = {"description", "defaults", "timing", "cases"}
LIST_KEYS = {"experiments", "backends", "families", "dtypes", "modes", "seeds", "seq_len", "batch", "hidden_size", "input_size"}
BLOCK_KEYS = LIST_KEYS | {"device", "task", "params"}
REQUIRED_KEYS = ("experiments", "backends", "seq_len", "batch", "hidden_size")
DEFAULTS = {"device": "cpu", "dtypes": ["float32"], "modes": list(DEFAULT_MODES), "seeds": [0], "task": RANDOM_TASK, "params": {}}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cases: tuple[Case, ...]


def available_suites() -> list[str]:
    return sorted(path.stem for path in SUITE_DIR.glob("*.toml"))


def suite_path(name_or_path: str) -> Path:
    """Resolve a suite name (``smoke``) or a path to a ``.toml`` file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise UsageError(f"suite file {name_or_path!r} does not exist")
        return candidate
    path = SUITE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UsageError(f"unknown suite {name_or_path!r}; expected one of {', '.join(available_suites())} or a path to a .toml file")
    return path


def load_suite(name_or_path: str, device_override: str | None = None) -> Suite:
    path = suite_path(name_or_path)
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UsageError(f"suite file {path} is not UTF-8 text: byte {error.object[error.start]:#04x} at offset {error.start}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"suite file {path} is not valid TOML: {error}") from None
    return parse_suite(path.stem, document, device_override, origin=str(path))


def parse_suite(name: str, document: dict, device_override: str | None = None, origin: str = "<suite>") -> Suite:
    _reject_unknown(document, TOP_LEVEL_KEYS, origin)
    timing = _timing_options(document.get("timing", {}), origin)
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise UsageError(f"{origin}: defaults must be a table ([defaults]), got {defaults!r}")
    _reject_unknown(defaults, BLOCK_KEYS, f"{origin} [defaults]")
    blocks = document.get("cases")
    if not isinstance(blocks, list) or not blocks:
        raise UsageError(f"{origin}: a suite needs at least one [[cases]] block")
    cases: list[Case] = []
    for index, block in enumerate(blocks):
        where = f"{origin} [[cases]] #{index + 1}"
        if not isinstance(block, dict):
            raise UsageError(f"{where}: expected a table, got {type(block).__name__}")
        _reject_unknown(block, BLOCK_KEYS, where)
        settings = {**DEFAULTS, **defaults, **block}
        cases.extend(_expand(settings, device_override, timing, where))
    unique = list(dict.fromkeys(cases))
    return Suite(name, str(document.get("description", "")), tuple(unique))


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; anything else must be a known device."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; expected one of {', '.join(DEVICES + ('auto',))}")
    return device


def _expand(settings: dict, device_override: str | None, timing: TimingOptions, where: str) -> list[Case]:
    for key in REQUIRED_KEYS:
        if key not in settings:
            raise UsageError(f"{where}: missing required key {key!r}")
    lists = {key: _as_list_of_values(settings[key], key, where) for key in LIST_KEYS if key in settings}
    device = resolve_device(device_override or settings["device"])
    experiments = [_choice(value, tuple(EXPERIMENTS), "experiment", where) for value in lists["experiments"]]
    modes = [_choice(value, MODES, "mode", where) for value in lists["modes"]]
    dtypes = [_dtype(value, where) for value in lists["dtypes"]]
    backends = [_backend(value, where) for value in lists["backends"]]
    families = [_choice(value, FAMILIES, "family", where) for value in lists.get("families", FAMILIES)]
    sizes = {key: [_positive_int(value, key, where) for value in lists[key]] for key in ("seq_len", "batch", "hidden_size")}
    inputs = [_positive_int(value, "input_size", where) for value in lists["input_size"]] if "input_size" in lists else [None]
    seeds = [_seed(value, where) for value in lists["seeds"]]
    task = settings["task"]
    if not isinstance(task, str) or not task:
        raise UsageError(f"{where}: task must be a non-empty string, got {task!r}")
    cases = []
    for family in families:
        members = [backend for backend in backends if family in backend.families]
        for seq_len, batch, hidden, input_size, seed, dtype, mode, experiment, params in itertools.product(
            sizes["seq_len"], sizes["batch"], sizes["hidden_size"], inputs, seeds, dtypes, modes, experiments,
            _params_grid(settings["params"], where),
        ):
            for backend in members:
                cases.append(Case(
                    experiment=experiment, task=task, backend=backend.name, family=family,
                    device=device, dtype=dtype, batch=batch, seq_len=seq_len,
                    input_size=hidden if input_size is None else input_size, hidden_size=hidden,
                    mode=mode, seed=seed, params=params, timing=timing,
                ))
    if not cases:
        raise UsageError(f"{where}: no backend in {lists['backends']} implements any family in {families}")
    prepared = []
    for case in cases:
        experiment = EXPERIMENTS[case.experiment]
        problem = experiment.check_case(case)
        if problem is not None:
            raise UsageError(f"{where}: experiment {case.experiment!r} {problem}")
        prepared.append(experiment.prepare_case(case))
    return prepared


def _params_grid(table, where: str) -> list[dict]:
    """Every combination of a ``params`` table whose values are JSON scalars or lists of them."""
    if not isinstance(table, dict):
        raise UsageError(f"{where}: params must be a table of name = value (or list of values), got {table!r}")
    names = sorted(table)
    choices = [_as_list(table[name], f"params.{name}", where) for name in names]
    grid = [dict(zip(names, combination)) for combination in itertools.product(*choices)]
    for params in grid:
        try:
            freeze_params(params)
        except ValueError as error:
            raise UsageError(f"{where}: {error}") from None
    return grid


def _timing_options(table, origin: str) -> TimingOptions:
    if not isinstance(table, dict):
        raise UsageError(f"{origin}: [timing] must be a table")
    allowed = {field.name: field.type for field in fields(TimingOptions)}
    _reject_unknown(table, set(allowed), f"{origin} [timing]")
    try:
        options = TimingOptions(**table)
    except TypeError as error:
        raise UsageError(f"{origin} [timing]: {error}") from None
    for name in ("warmup", "min_reps", "max_reps"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup" else 1):
            raise UsageError(f"{origin} [timing]: {name} must be a {'non-negative' if name == 'warmup' else 'positive'} integer, got {value!r}")
    if not isinstance(options.budget_s, (int, float)) or options.budget_s <= 0:
        raise UsageError(f"{origin} [timing]: budget_s must be a positive number of seconds, got {options.budget_s!r}")
    if options.threads is not None:
        _positive_int(options.threads, "threads", f"{origin} [timing]")
    return options


def _reject_unknown(table: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(allowed))}")


def _as_list(value, key: str, where: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise UsageError(f"{where}: {key} must not be empty")
    return values


def _as_list_of_values(value, key: str, where: str) -> list:
    """A list key of a [[cases]] block: a name or number, or a list of them (no tables, no lists of lists)."""
    values = _as_list(value, key, where)
    if any(isinstance(item, (dict, list)) for item in values):
        raise UsageError(f"{where}: {key} must be a value or a list of values, got {value!r}")
    return values


def _choice(value, allowed: tuple, what: str, where: str) -> str:
    if value not in allowed:
        raise UsageError(f"{where}: unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _dtype(value, where: str) -> str:
    try:
        return canonical_dtype(value)
    except UsageError as error:
        raise UsageError(f"{where}: {error}") from None


def _backend(value, where: str):
    try:
        return get_backend(value)
    except UsageError as error:
        raise UsageError(f"{where}: {error}") from None


def _positive_int(value, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _seed(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{where}: seeds must be non-negative integers, got {value!r}")
    return value
