"""The import graph of src/ (DESIGN.md): imports point down the layers, no module-level cycle, no
stage imports the pipeline back, and no function-local import of a tunewise module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = (  # lower layers never import higher ones
    ("core",),
    ("config", "data", "models"),
    ("training", "evaluation", "doctor", "report"),
    ("tasks", "studies", "serving", "feedback"),
    ("pipeline",),
    ("cli", "__init__", "__main__"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "tunewise").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module `name` refers to: itself, or the package holding the imported attribute."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def module_imports(path: Path) -> set[str]:
    """tunewise modules imported at module level (not under `if TYPE_CHECKING`)."""
    found: set[str] = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If) and not _type_checking(node):
            body += node.body + node.orelse
        elif isinstance(node, ast.Try):
            body += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunewise"):
            for alias in node.names:
                target = _resolve(f"{node.module}.{alias.name}") or _resolve(node.module or "")
                found.add(target or "")
        elif isinstance(node, ast.Import):
            found |= {_resolve(a.name) or "" for a in node.names if a.name.startswith("tunewise")}
    return found - {""}


def function_local_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                names = [sub.module or ""] if isinstance(sub, ast.ImportFrom) else []
                names += [a.name for a in sub.names] if isinstance(sub, ast.Import) else []
                if any(n.startswith("tunewise") for n in names):
                    out.append(f"{path.relative_to(SRC)}:{sub.lineno}")
    return out


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


GRAPH = {name: module_imports(path) - {name} for name, path in MODULES.items()}


def test_the_graph_covers_the_package():
    assert {"tunewise.pipeline", "tunewise.tasks.classification", "tunewise.core.rundir"} <= set(
        GRAPH
    )
    assert "tunewise.core.errors" in GRAPH["tunewise.pipeline"] | GRAPH["tunewise.cli"]


def test_imports_point_down_the_layers():
    upward = [f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_stage_imports_the_pipeline():
    back = [a for a, deps in GRAPH.items() if "tunewise.pipeline" in deps and layer(a) < 4]
    assert not back


def test_no_import_cycle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_function_local_import_of_tunewise():
    local = [hit for path in MODULES.values() for hit in function_local_imports(path)]
    assert not local, "\n".join(local)


@pytest.mark.parametrize("bad", ["tunewise.pipeline", "tunewise.tasks.classification"])
def test_the_layer_check_can_fail(bad, monkeypatch):
    """A core module importing a stage is caught (the check is not vacuous)."""
    monkeypatch.setitem(GRAPH, "tunewise.core.rundir", GRAPH["tunewise.core.rundir"] | {bad})
    with pytest.raises(AssertionError):
        test_imports_point_down_the_layers()
