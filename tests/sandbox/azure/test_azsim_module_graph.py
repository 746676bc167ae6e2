"""The simulator's shape: no import circles between its modules and no imports hidden inside functions, so that
what a module depends on is what its top says (sandbox/README.md, "How the simulator is built")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sandbox.azure.action_table import map_request
from sandbox.azure.arm import ROUTE_TABLE

PACKAGE = "sandbox.azure"
ROOT = Path(__file__).resolve().parents[3] / "sandbox" / "azure"


def _modules() -> dict[str, ast.Module]:
    return {
        PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}": ast.parse(path.read_text(), str(path))
        for path in sorted(ROOT.glob("*.py"))
    }


def _imported(node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package's modules an import statement loads (`from sandbox.azure import x` loads `sandbox.azure.x`)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.module is None:
        return set()
    submodules = {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known}
    # Names that are not submodules come from the module itself (the package's __init__ for `sandbox.azure`).
    itself = {node.module} if node.module in known and len(submodules) < len(node.names) else set()
    return submodules | itself


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {
            target
            for node in ast.walk(tree)  # every import, TYPE_CHECKING ones included: a circle of types is one too
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in _imported(node, known)
            if target != name
        }
        for name, tree in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the path around it, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for target in sorted(graph[module]):
            found = visit(target)
            if found is not None:
                return found
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found is not None:
            return found
    return None


def test_the_simulators_modules_import_each_other_without_a_circle() -> None:
    graph = _graph()
    assert f"{PACKAGE}.state" in graph and f"{PACKAGE}.arm" in graph  # the test reads the real package
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_circle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_simulator_imports_inside_a_function() -> None:
    hidden = [
        f"{name}:{inner.lineno}"
        for name, tree in _modules().items()
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(function)
        if isinstance(inner, ast.Import | ast.ImportFrom)
    ]
    assert hidden == []


def test_no_module_name_is_in_both_the_simulator_and_the_host() -> None:
    host = {path.stem for path in (ROOT.parent / "host").glob("*.py")} - {"__init__"}
    assert {path.stem for path in ROOT.glob("*.py")} & host == set()


def _example(template: str) -> str:
    """A path the template matches: each parameter filled, each optional part kept."""
    path = re.sub(r"\{\w+:scope\}", "/subscriptions/s-1", template)
    path = re.sub(r"\{\w+(?::path)?\}", "x-1", path)
    return path.replace("[", "").replace("]", "")


def test_every_arm_route_has_the_action_authorization_checks() -> None:
    missing = [
        f"{route.method} {route.template}"
        for route in ROUTE_TABLE.routes
        if route.method != "*"  # the 404s below role assignments and definitions
        if map_request(route.method, _example(route.template)) is None
    ]
    assert missing == []
    assert ROUTE_TABLE.resolve(_example(ROUTE_TABLE.routes[0].template)) is not None
