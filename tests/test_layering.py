"""The modules' import graph: the library below the lab, the lab in layers, no circles.

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


# The library: what a user imports to build and train a net. The lab and the tools on top of
# it (the runner, the reports, the tuner, the benchmark, the command line) use it, never the
# other way round.
LIBRARY_PREFIXES = (
    "keras_cnns.analysis", "keras_cnns.blocks", "keras_cnns.data", "keras_cnns.errors", "keras_cnns.layers",
    "keras_cnns.losses", "keras_cnns.models", "keras_cnns.options", "keras_cnns.registry", "keras_cnns.storage",
    "keras_cnns.training", "keras_cnns.sample_data",
)  # fmt: skip
ABOVE_THE_LIBRARY = ("keras_cnns.lab", "keras_cnns.benchmark", "keras_cnns.cli")


def _in(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "keras_cnns.lab.experiments" in graph["keras_cnns.lab.runs"]
    assert "keras_cnns.lab.report" in graph["keras_cnns.lab.runner"]  # a lazy import counts
    assert "keras_cnns.training.record" in graph["keras_cnns.training.engine"]


def test_every_module_is_library_or_above_it():
    for module in import_graph():
        if module == "keras_cnns" or module.endswith("native_logs"):
            continue  # the package itself; the command line's log filter (imports nothing of ours)
        assert _in(module, LIBRARY_PREFIXES) != _in(module, ABOVE_THE_LIBRARY), module


def test_the_library_never_imports_the_lab():
    graph = import_graph()
    for module in graph:
        if not _in(module, LIBRARY_PREFIXES):
            continue
        for above in (m for m in graph if _in(m, ABOVE_THE_LIBRARY)):
            assert not _reaches(graph, module, above), f"{module} imports {above}, directly or through others"


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("keras_cnns.lab.experiments", "keras_cnns.lab.runs"),
        ("keras_cnns.lab.runs", "keras_cnns.lab.claims"),
        ("keras_cnns.lab.claims", "keras_cnns.lab.report"),
        ("keras_cnns.lab.tuning_report", "keras_cnns.lab.tuning"),
        ("keras_cnns.lab.report", "keras_cnns.lab.runner"),
        ("keras_cnns.lab.tuning", "keras_cnns.lab.runner"),
        ("keras_cnns.lab.writer", "keras_cnns.lab.experiments"),
        ("keras_cnns.lab.runner", "keras_cnns.cli"),
        ("keras_cnns.training.config", "keras_cnns.training.engine"),
        ("keras_cnns.training.record", "keras_cnns.training.engine"),
    ],
)
def test_lower_layers_never_reach_higher_ones(low, high):
    graph = import_graph()
    assert not _reaches(graph, low, high), f"{low} imports {high}, directly or through others"


def test_no_private_names_are_imported_across_modules():
    modules = _modules()
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_cnns"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{name} imports {private} from {node.module}"


def test_no_import_circles_in_the_package():
    graph = import_graph()
    for module, deps in graph.items():
        for dep in deps:
            if dep.startswith(module + "."):
                continue  # a package's __init__ re-exporting its own modules
            assert not _reaches(graph, dep, module), f"circle: {module} -> {dep} -> ... -> {module}"
