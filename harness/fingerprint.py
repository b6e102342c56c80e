"""What a results directory's rows were asked for, recorded in ``DIR/fingerprint.json``.

``--resume`` continues a run; it must not quietly mix in a different suite, another commit, other
timing settings or another device. The fingerprint has one entry per thing that must match:

* ``suite``: the suite's name, its number of cases and a SHA-256 of their identities (device
  aside, so a device change is reported as such and not as a different suite);
* ``commit``: the checkout's git commit and dirty flag, and rnnbench's version;
* ``timing``: the timing options of the cases (:class:`rnnbench.harness.cases.TimingOptions`);
* ``devices``: the devices the cases ask for.

:func:`differences` says, one line per entry, what a resume would change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from rnnbench import __version__
from rnnbench.harness.env import source_revision
from rnnbench.harness.errors import UsageError
from rnnbench.harness.suites import Suite

FINGERPRINT_NAME = "fingerprint.json"


def fingerprint(suite: Suite) -> dict:
    """The fingerprint of running ``suite`` from this checkout (see the module docstring)."""
    identities = sorted(json.dumps({**case.identity(), "device": None}, sort_keys=True) for case in suite.cases)
    timings = sorted({json.dumps(asdict(case.timing), sort_keys=True) for case in suite.cases})
    return {
        "suite": {"name": suite.name, "cases": len(suite.cases),
                  "sha256": hashlib.sha256("\n".join(identities).encode()).hexdigest()},
        "commit": {**source_revision(), "version": __version__},
        "timing": [json.loads(timing) for timing in timings],
        "devices": sorted({case.device for case in suite.cases}),
    }


def differences(recorded: dict, asked: dict) -> list[str]:
    """What differs between two fingerprints, one line per entry (empty when they match)."""
    lines = []
    if recorded.get("suite", {}).get("sha256") != asked["suite"]["sha256"]:
        lines.append(f"suite: recorded {_suite(recorded.get('suite'))}, asked {_suite(asked['suite'])}")
    if recorded.get("commit") != asked["commit"]:
        lines.append(f"commit: recorded {_commit(recorded.get('commit'))}, asked {_commit(asked['commit'])}")
    if recorded.get("timing") != asked["timing"]:
        lines.append(f"timing: {_timing(recorded.get('timing'), asked['timing'])}")
    if recorded.get("devices") != asked["devices"]:
        lines.append(f"devices: recorded {_render(recorded.get('devices'))}, asked {_render(asked['devices'])}")
    return lines


def read_fingerprint(directory: Path) -> dict | None:
    """The fingerprint recorded in ``directory``, or None if it has none (written before fingerprints)."""
    path = directory / FINGERPRINT_NAME
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"{path} is not a readable fingerprint ({error}); pass --force to replace it") from None
    if not isinstance(recorded, dict):
        raise UsageError(f"{path} must hold a JSON object, got {recorded!r}; pass --force to replace it")
    return recorded


def write_fingerprint(directory: Path, asked: dict) -> None:
    """Record ``asked`` in ``directory`` (atomically)."""
    path = directory / FINGERPRINT_NAME
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asked, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def _suite(entry) -> str:
    if not isinstance(entry, dict):
        return repr(entry)
    return f"{entry.get('name')!r} ({entry.get('cases')} cases, content {str(entry.get('sha256'))[:12]})"


def _commit(entry) -> str:
    if not isinstance(entry, dict):
        return repr(entry)
    dirty = " with uncommitted changes" if entry.get("git_dirty") else ""
    return f"{entry.get('git_sha') or 'no git commit'}{dirty} (rnnbench {entry.get('version')})"


def _timing(recorded, asked: list[dict]) -> str:
    """The timing options that changed, by name, when both runs have one set of them."""
    if isinstance(recorded, list) and len(recorded) == len(asked) == 1 and isinstance(recorded[0], dict):
        before, after = recorded[0], asked[0]
        return "; ".join(f"{name} recorded {before.get(name)!r}, asked {after.get(name)!r}"
                         for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name))
    return f"recorded {_render(recorded)}, asked {_render(asked)}"


def _render(value) -> str:
    return json.dumps(value, sort_keys=True)
