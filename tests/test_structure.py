"""The package's structure: dependencies point one way (no module imports one that imports it back)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("kernels", "baselines", "harness")


def _modules() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules["rnnbench." + ".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the rnnbench modules it imports anywhere in its source (lazy imports included)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnbench."):
                for alias in node.names:
                    member = f"{node.module}.{alias.name}"
                    targets.add(member if member in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith("rnnbench."))
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, ignoring a package's imports of its own submodules (its registry lines)."""
    state: dict[str, str] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target.startswith(module + "."):
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_no_import_cycles():
    assert find_cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"rnnbench.a": {"rnnbench.b"}, "rnnbench.b": {"rnnbench.c"}, "rnnbench.c": {"rnnbench.a"}}
    assert find_cycles(graph) == [["rnnbench.a", "rnnbench.b", "rnnbench.c", "rnnbench.a"]]


def test_dependencies_point_from_harness_to_kernels_to_baselines():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("rnnbench.baselines"):
            assert not [t for t in targets if t.startswith(("rnnbench.kernels", "rnnbench.harness"))], module
        if module.startswith("rnnbench.kernels"):
            assert not [t for t in targets if t.startswith("rnnbench.harness")], module
