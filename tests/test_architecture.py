"""The layering docs/architecture.md describes: no two modules of src/sao import each other."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The sao modules a file imports anywhere (a lazy import inside a function counts too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: imported(ast.parse(path.read_text()), set(files)) - {name} for name, path in files.items()}


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "sao.loop.config" in graph["sao.loop.run"]
    assert "sao.engine.capabilities" in graph["sao.synth.pipeline"]  # a lazy import, inside a function


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    # A package's __init__ that re-exports its own submodules is not a circle of two modules.
    pairs = sorted(
        (a, b)
        for a, deps in graph.items()
        for b in deps
        if a < b and a in graph[b] and not b.startswith(a + ".") and not a.startswith(b + ".")
    )
    assert pairs == []


def test_the_engines_never_import_rain_which_wraps_them() -> None:
    graph = import_graph()
    assert "sao.rain.engine" in graph and graph["sao.rain.engine"] & {m for m in graph if m.startswith("sao.engine.")}
    engines = {name: deps for name, deps in graph.items() if name.startswith("sao.engine")}
    assert {name: sorted(d for d in deps if d.startswith("sao.rain")) for name, deps in engines.items()} == {
        name: [] for name in engines
    }
