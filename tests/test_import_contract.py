"""What the deployed app is made of, checked from the source: the product never imports the simulator, the tests or
the tooling (none of them is deployed), it imports only what remote build installs, and .funcignore keeps exactly
what is not the app out of the package.

The product is function_app.py and every top-level package it imports, directly or through another one
(activities/, cmk/, orchestrators/, triggers/ and any new one), found by parsing imports with ast, not by a list,
and the top-level directories of data its code names (a page it serves, say).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINT = ROOT / "function_app.py"
# The packages every version of the app has; the closure below must find them (it may find more).
KNOWN_PRODUCT_PACKAGES = {"activities", "cmk", "orchestrators", "triggers"}
# Top-level packages of this repository that are never deployed: the product must not import them.
NEVER_DEPLOYED = {"sandbox", "tests", "bench", "cmk_admin"}
# Files the Functions host needs beside the code.
DEPLOYED_FILES = {"function_app.py", "host.json", "requirements.txt"}
# The packer's own instructions: whether .funcignore itself is packed changes nothing the app does.
PACKAGING_METADATA = {".funcignore"}


def _local_top_levels() -> set[str]:
    """Names importable from the repository root: packages (a directory with __init__.py) and modules."""
    names = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()}
    return names | {path.stem for path in ROOT.glob("*.py")}


def _python_files(package: str) -> list[Path]:
    root = ROOT / package
    if root.is_file() or not root.is_dir():
        return [ROOT / f"{package}.py"]
    return sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every import in a file: import statements anywhere (functions and TYPE_CHECKING
    blocks included), relative ones resolved, and importlib.import_module / __import__ with a literal name."""
    relative_to = path.relative_to(ROOT).parts[0] if path.parent != ROOT else path.stem
    for node in ast.walk(_parsed(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, relative_to if node.level else str(node.module).split(".")[0]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value.split(".")[0]


@cache
def _rules() -> tuple[tuple[bool, str], ...]:
    return tuple(_funcignore())


@cache
def product_packages() -> frozenset[str]:
    """The local packages function_app.py imports, and those they import, and so on (never-deployed ones aside:
    importing one is what test_the_product_never_imports_what_is_not_deployed reports)."""
    local = _local_top_levels() - NEVER_DEPLOYED - {ENTRY_POINT.stem}
    found: set[str] = set()
    pending = [name for _, name in _imported(ENTRY_POINT) if name in local]
    while pending:
        package = pending.pop()
        if package in found:
            continue
        found.add(package)
        pending += [name for path in _python_files(package) for _, name in _imported(path) if name in local]
    return frozenset(found)


def product_files() -> list[Path]:
    return [ENTRY_POINT, *(path for package in sorted(product_packages()) for path in _python_files(package))]


@cache
def data_directories() -> frozenset[str]:
    """Top-level directories, not packages, that product code names in a string literal (`ROOT / "dashboard"`)."""
    candidates = {path.name for path in ROOT.iterdir() if path.is_dir() and not (path / "__init__.py").exists()}
    literals = {
        node.value.split("/")[0]
        for path in product_files()
        for node in ast.walk(_parsed(path))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    return frozenset(candidates & literals)


def test_the_product_is_found_from_function_app() -> None:
    assert product_packages() >= KNOWN_PRODUCT_PACKAGES
    assert all(_python_files(package)[0].is_file() for package in product_packages())


def test_the_product_never_imports_what_is_not_deployed() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in product_files()
        for line, name in _imported(path)
        if name in NEVER_DEPLOYED
    ]
    assert offending == []


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def installed_by_remote_build() -> frozenset[str]:
    """requirements.txt and, transitively, what those distributions require (as installed here)."""
    pending = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pending.append(Requirement(line).name)
    found: set[str] = set()
    while pending:
        name = _normalized(pending.pop())
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: nothing more to follow (an import of it fails below)
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return frozenset(found)


def test_the_product_imports_only_the_standard_library_itself_and_requirements() -> None:
    distributions = importlib.metadata.packages_distributions()
    local = _local_top_levels()
    installed = installed_by_remote_build()
    assert {"azure-functions", "azure-functions-durable", "azure-core"} <= installed
    unexpected = []
    for path in product_files():
        for line, name in _imported(path):
            if name in sys.stdlib_module_names or name in product_packages() or name == "__future__":
                continue
            if name in local or not {_normalized(d) for d in distributions.get(name, [])} & installed:
                unexpected.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert unexpected == [], "not deployed, or not installed from requirements.txt"


# ---------------------------------------------------------------------------------------------------------------
# .funcignore: what the package leaves out
# ---------------------------------------------------------------------------------------------------------------


def _funcignore() -> list[tuple[bool, str]]:
    """(negated, pattern) per rule, in order."""
    rules = []
    for raw in (ROOT / ".funcignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.removeprefix("!")))
    return rules


def _rule_matches(pattern: str, relative: str, is_dir: bool) -> bool:
    """gitignore semantics for one path: `x/` matches directories only; a pattern with a `/` inside is anchored at
    the root, one without matches the name at any depth."""
    if pattern.endswith("/"):
        if not is_dir:
            return False
        pattern = pattern.rstrip("/")
    if "/" in pattern:
        return fnmatch.fnmatchcase(relative, pattern.lstrip("/"))
    return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)


def excluded(relative: str) -> bool:
    """Whether the package leaves out this path (relative to the root, `/`-separated): the path itself or one of
    its directories matches the last rule that matches it, not negated."""
    parts = relative.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        is_dir = depth < len(parts) or (ROOT / prefix).is_dir()
        verdict = None
        for negated, pattern in _rules():
            if _rule_matches(pattern, prefix, is_dir):
                verdict = not negated
        if verdict:
            return True
    return False


def test_the_excluded_helper_reads_gitignore_rules() -> None:
    # The helper the next tests stand on, on paths whose answer does not depend on this repository's state.
    assert excluded("tests") and excluded("tests/test_docs.py") and excluded("README.md")
    assert excluded("cmk/__pycache__/settings.cpython-311.pyc") and excluded(".venv/bin/python")
    assert not excluded("function_app.py") and not excluded("cmk/settings.py")


def deployed_top_levels() -> set[str]:
    local = {name if (ROOT / name).is_dir() else f"{name}.py" for name in product_packages()}
    return DEPLOYED_FILES | local | data_directories()


def test_every_top_level_entry_is_deployed_or_excluded() -> None:
    # One test over the listing, not one per entry: xdist workers must collect the same tests, and the listing can
    # change while they do (a cache directory appears).
    problems = []
    for entry in sorted(os.listdir(ROOT)):
        if entry in PACKAGING_METADATA:
            continue
        if entry in deployed_top_levels():
            if excluded(entry):
                problems.append(f".funcignore leaves {entry} out, but the app needs it")
        elif not excluded(entry):
            problems.append(f"{entry} is not in the app (nothing deployed imports or names it): add it to .funcignore")
    assert problems == []


def test_the_app_files_exist_and_nothing_inside_the_product_that_it_needs_is_excluded() -> None:
    assert all((ROOT / name).is_file() for name in DEPLOYED_FILES)
    for directory in sorted({name for name in product_packages() if (ROOT / name).is_dir()} | data_directories()):
        for path in (ROOT / directory).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if "__pycache__" in path.parts:
                assert excluded(relative), f"{relative}: compiled files stay out of the package"
            elif path.is_file() and (directory in data_directories() or path.suffix in (".py", ".json")):
                assert not excluded(relative), f".funcignore leaves {relative} out, but the app needs it"
