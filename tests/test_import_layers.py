"""The layers, read from the source: no two modules import each other (directly or round a loop, imports
inside functions included), and inference imports nothing from the server or the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import facescope

PACKAGE = Path(facescope.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path) -> set[str]:
    """The facescope modules `name` imports anywhere in its source (at the top, in functions), except
    under `if TYPE_CHECKING:`, which never runs."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from facescope.x import y` imports the module x.y where there is one
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: the strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                connect(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return loops


def test_the_scan_sees_the_modules_and_finds_a_loop_where_there_is_one():
    assert {"facescope.inference.results", "facescope.cli.predict", "facescope.batch"} <= GRAPH.keys()
    assert "facescope.inference.results" in GRAPH["facescope.batch"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_inference_imports_neither_serving_nor_the_command_line():
    crossing = {module: sorted(imported for imported in imports
                               if imported.startswith(("facescope.serving", "facescope.cli")))
                for module, imports in GRAPH.items() if module.startswith("facescope.inference")}
    assert {module: imported for module, imported in crossing.items() if imported} == {}


def test_engines_and_the_server_import_nothing_from_the_command_line():
    for module in ("facescope.engines", "facescope.inference.local", "facescope.inference.video", "facescope.batch",
                   "facescope.serving.routers", "facescope.serving.app"):
        assert not any(imported.startswith("facescope.cli") for imported in GRAPH[module]), module


def test_the_bundles_reach_nothing_above_them():
    """Bundles sit low (the server, the CLI and the model card read them): what they state about detection
    comes from the declared options (facescope.faces.options), not from the detector, and nothing of
    inference, training, the server or the command line is imported."""
    above = ("facescope.faces.detect", "facescope.faces.pipeline", "facescope.faces.crops", "facescope.inference",
             "facescope.engines", "facescope.batch", "facescope.evaluation", "facescope.model",
             "facescope.training", "facescope.serving", "facescope.cli")
    reached = {module: sorted(imported for imported in imports if imported.startswith(above))
               for module, imports in GRAPH.items() if module.startswith("facescope.bundles")}
    assert {module: imported for module, imported in reached.items() if imported} == {}
