"""The modules' import graph: experiments below the runner and the reports, no circles.

Imports are read from the source with ``ast`` (inside functions too: a lazy import is still a
dependency), so this runs without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_cnns"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The keras_cnns modules ``path`` imports, anywhere in its source."""
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found - {_module_name(path)}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: imports_of(path, known) for name, path in modules.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "keras_cnns.experiments" in graph["keras_cnns.results"]
    assert "keras_cnns.results" in graph["keras_cnns.reproduce"]  # a lazy import counts


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("keras_cnns.experiments", "keras_cnns.reproduce"),
        ("keras_cnns.experiments", "keras_cnns.results"),
        ("keras_cnns.experiments", "keras_cnns.tuning"),
        ("keras_cnns.results", "keras_cnns.reproduce"),
        ("keras_cnns.tuning", "keras_cnns.reproduce"),
        ("keras_cnns.reproduce", "keras_cnns.cli"),
    ],
)
def test_lower_layers_never_reach_higher_ones(low, high):
    graph = import_graph()
    assert not _reaches(graph, low, high), f"{low} imports {high}, directly or through others"


def test_no_import_circles_in_the_package():
    graph = import_graph()
    for module, deps in graph.items():
        for dep in deps:
            if dep.startswith(module + "."):
                continue  # a package's __init__ re-exporting its own modules
            assert not _reaches(graph, dep, module), f"circle: {module} -> {dep} -> ... -> {module}"
