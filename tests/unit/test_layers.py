"""The layers of docs/architecture.md, read from the code: nothing imports upwards, no import
cycle (imports inside functions count), and every import inside a function is a seam that
docs/architecture.md names ("Seams: the imports deferred on purpose").

The import graph is built with ``ast`` over every module of the ``ocirt`` package. ``from X
import Y`` is an edge to ``X.Y`` when that is a module, else to ``X``. Imports under ``if
TYPE_CHECKING:`` never run: they count for the layers (a type from above is still a
dependency on it) but not for cycles or seams. A submodule's implicit import of its own
package (Python initialises ``ocirt.linux`` before ``ocirt.linux.rootfs``) is no edge, as in
the usual import linters."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "ocirt"
ARCHITECTURE = REPO / "docs" / "architecture.md"

# Each layer and the layers it may import (besides itself). ``base`` is what every layer
# shares: errors, identity, logging, JSON, caches, paths, the package's constants and the
# launcher's importer.
BASE = {"ocirt", "ocirt.errors", "ocirt.identity", "ocirt.log", "ocirt.jsonfast", "ocirt.cache",
        "ocirt.paths", "ocirt.codepack"}
MAY_IMPORT = {
    "cli": {"container", "config", "linux", "base"},
    "container": {"config", "linux", "base"},
    "linux": {"base"},
    "config": {"base"},
    "base": {"base"},
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # an ocirt module, or the module name as written for anything else
    line: int
    in_function: bool
    type_only: bool


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _resolve(name: str) -> str:
    """The ocirt module ``name`` means: the longest prefix that is one."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[:len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING")


def imports_of(module: str, path: Path) -> list[Import]:
    found: list[Import] = []

    def walk(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                         ast.Lambda))
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, path, child)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                         for alias in child.names]
            else:
                walk(child, function, type_only or _is_type_checking(child))
                continue
            for name in dict.fromkeys(names):
                if name == "ocirt" or name.startswith("ocirt."):
                    name = _resolve(name)
                found.append(Import(module, name, child.lineno, in_function, type_only))

    walk(ast.parse(path.read_text(), str(path)), False, False)
    return found


ALL_IMPORTS = [imp for name, path in sorted(MODULES.items()) for imp in imports_of(name, path)]


def layer(module: str) -> str | None:
    if module == "ocirt.__main__":  # ``python -m ocirt``: the command line
        return "cli"
    if module == "ocirt.timings":  # the lifecycle's processes, timed (it runs their steps)
        return "container"
    if module in BASE:
        return "base"
    for name in ("cli", "container", "linux", "config"):
        if module == f"ocirt.{name}" or module.startswith(f"ocirt.{name}."):
            return name
    return None


def test_every_module_has_a_layer() -> None:
    assert [name for name in MODULES if layer(name) is None] == []


def test_nothing_imports_upwards() -> None:
    """cli -> container -> linux and config -> base; config and linux do not import each
    other (config is data: the container layer hands it to linux)."""
    wrong = [f"{imp.importer}:{imp.line} imports {imp.imported}" for imp in ALL_IMPORTS
             if imp.imported in MODULES and layer(imp.imported) != layer(imp.importer)
             and layer(imp.imported) not in MAY_IMPORT[layer(imp.importer) or ""]]
    assert wrong == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def runtime_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in ALL_IMPORTS:
        if imp.imported in MODULES and not imp.type_only:
            edges.setdefault(imp.importer, set()).add(imp.imported)
    return edges


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    assert _cycles(runtime_edges()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def documented_seams() -> set[tuple[str, str]]:
    """(importer, imported) pairs of the seams section of docs/architecture.md: lines
    ``- `importer` -> `imported`, `imported`: why``."""
    text = ARCHITECTURE.read_text()
    section = text.split("\n## Seams", 1)[1].split("\n## ", 1)[0]
    pairs = set()
    for line in section.splitlines():
        match = re.match(r"\s*[-*] `([\w.]+)` -> ((?:`[\w.]+`(?:, )?)+)", line)
        if match:
            for imported in re.findall(r"`([\w.]+)`", match.group(2)):
                pairs.add((match.group(1), imported))
    return pairs


def deferred_imports() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for imp in ALL_IMPORTS:
        if imp.in_function and not imp.type_only:
            where = f"{MODULES[imp.importer].relative_to(REPO)}:{imp.line}"
            found.setdefault((imp.importer, imp.imported), []).append(where)
    return found


def test_every_import_inside_a_function_is_a_documented_seam() -> None:
    undocumented = {f"{a} -> {b} ({', '.join(w)})" for (a, b), w in deferred_imports().items()
                    if (a, b) not in documented_seams()}
    assert sorted(undocumented) == []


def test_every_documented_seam_exists() -> None:
    stale = documented_seams() - set(deferred_imports())
    assert sorted(stale) == []


@pytest.mark.parametrize("module", ["ocirt.config", "ocirt.config.default",
                                    "ocirt.config.seccomp_profile"])
def test_config_imports_nothing_from_linux(module: str) -> None:
    assert not [imp for imp in ALL_IMPORTS if imp.importer.startswith(module)
                and imp.imported.startswith(("ocirt.linux", "ocirt.container", "ocirt.cli"))]
