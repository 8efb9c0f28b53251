"""Imports point down the layers, and the import graph of src/gradwise has no circles.

The layers (DESIGN.md): leaf modules (errors, logs, artifacts, the config and its settings
models) -> data -> models -> training, evaluate -> engines -> the Run -> the pipeline -> the
judgment packages (auditing, explaining, deploy, serving, monitoring, tuning, reporting,
backends, sklearn) -> api and the `gradwise` front door -> cli. Every import counts that runs
at some point, at the top of a module or inside a function (`importlib.import_module` of a
literal name included); only imports under `if TYPE_CHECKING:` are left out, since they
never run. A module may import its own layer, but no circle may form.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import gradwise

PACKAGE = Path(gradwise.__file__).parent

LAYERS: dict[str, int] = {
    # leaves: imported by everything, importing nothing of gradwise's but other leaves
    "errors": 0,
    "logs": 0,
    "artifacts": 0,
    "config": 0,
    "config_errors": 0,
    "arch_config": 0,
    "audit_config": 0,
    "settings": 0,
    "version": 0,
    "data": 1,
    "models": 2,
    "training": 3,
    "evaluate": 3,
    "engines": 4,
    "run": 5,
    "run_files": 5,
    "run_generate": 5,
    "run_conformal": 5,
    "run_predict": 5,
    "pipeline": 6,
    "auditing": 7,
    "explaining": 7,
    "deploy": 7,
    "serving": 7,
    "monitoring": 7,
    "tuning": 7,
    "reporting": 7,
    "backends": 7,
    "sklearn": 7,
    "api": 8,
    "": 8,  # gradwise/__init__.py: the front door re-exports the api
    "cli": 9,
    "demo": 9,
    "__main__": 9,
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def module_names() -> dict[str, Path]:
    """Dotted name of every module under src/gradwise (a package by its __init__)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` lands in: itself, or the nearest package or module above it (an
    imported function or class lives in its module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: the whole tree less the bodies of `if TYPE_CHECKING:`."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement (or importlib.import_module("...")) asks for."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        return [f"{prefix}.{alias.name}" for alias in node.names]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def import_edges() -> list[Edge]:
    modules = module_names()
    edges = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _runtime_nodes(tree):
            for name in _imported(node, module, path.name == "__init__.py"):
                if name != "gradwise" and not name.startswith("gradwise."):
                    continue
                target = _resolve(name, modules)
                if target is not None and target != module:
                    edges.add(Edge(module, target, getattr(node, "lineno", 0)))
    return sorted(edges, key=lambda e: (e.source, e.target, e.line))


def layer_of(module: str) -> int:
    first = module.split(".")[1] if "." in module else ""
    assert first in LAYERS, (
        f"{module} has no layer: place gradwise.{first} in LAYERS of {Path(__file__).name} "
        "(and in DESIGN.md's layering)."
    )
    return LAYERS[first]


def circles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
        graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_every_module_has_a_layer():
    for module in module_names():
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{e}: layer {layer_of(e.source)} imports layer {layer_of(e.target)}"
        for e in import_edges()
        if layer_of(e.target) > layer_of(e.source)
    ]
    assert not upward, "imports that point up the layers:\n  " + "\n  ".join(upward)


def test_the_import_graph_has_no_circles():
    edges = import_edges()
    found = circles(edges)
    described = []
    for component in found:
        inside = [str(e) for e in edges if e.source in component and e.target in component]
        described.append(", ".join(component) + "\n    " + "\n    ".join(inside))
    assert not found, "import circles:\n  " + "\n  ".join(described)


def test_the_walker_sees_imports_inside_functions_and_skips_type_checking():
    """The checker itself: a made-up circle through a function-level import is found, and an
    import under TYPE_CHECKING is not an edge."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from gradwise.api import audit\n"
        "def f():\n"
        "    from gradwise.auditing.conformal import conformal_quantile\n"
    )
    modules = module_names()
    names = [
        name
        for node in _runtime_nodes(ast.parse(source))
        for name in _imported(node, "gradwise.run", False)
        if name.startswith("gradwise")
    ]
    assert [_resolve(n, modules) for n in names] == ["gradwise.auditing.conformal"]
    loop = [Edge("gradwise.a", "gradwise.b", 1), Edge("gradwise.b", "gradwise.a", 2)]
    assert circles(loop) == [["gradwise.a", "gradwise.b"]]
    assert circles(loop[:1]) == []
