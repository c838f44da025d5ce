"""Imports point only down the floors: cli > services > (domain, eventlog) > runtime > schemas.

Every module under services/ and schemas/ is parsed (not imported), so an import inside a
function or under `if TYPE_CHECKING:` counts as much as one at the top of the file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO

# The floor of each package: a package may import only itself and packages on lower floors,
# so nothing points up or sideways (services never import each other; domain and eventlog
# are independent of each other).
FLOORS = {
    "services.cli": 4,
    "services.intake": 3,
    "services.router": 3,
    "services.notifier": 3,
    "services.audit": 3,
    "services.domain": 2,
    "services.eventlog": 2,
    "services.runtime": 1,
    "schemas": 0,
}

# (file, imported package) pairs tolerated while their files are being rewritten (issue 9).
# Only files under rewrite belong here; remove each entry as soon as its import is gone.
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()

ROOTS = ("services", "schemas")


def module_name(path: Path) -> str:
    """`services/cli/main.py` -> `services.cli.main`; a package's `__init__` is the package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """The layered package a dotted module name belongs to, or None outside the project."""
    parts = module.split(".")
    if parts[0] == "schemas":
        return "schemas"
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return None


def imported_modules(tree: ast.AST, *, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import anywhere in `tree`, relative ones resolved.

    `from a import b` yields `a.b` as well as `a`: `b` may be a submodule, and
    `from services import audit` must count as importing services.audit.
    """
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def project_modules() -> Iterator[tuple[Path, str]]:
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            yield path, module_name(path)


def package_edges() -> list[tuple[str, int, str, str]]:
    """(file, line, from package, to package) for every import across packages."""
    edges = []
    for path, module in project_modules():
        source = package_of(module)
        if source is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        seen: set[tuple[int, str]] = set()
        for line, name in imported_modules(tree, module=module, is_package=is_package):
            target = package_of(name)
            if target is None or target == source or (line, target) in seen:
                continue
            seen.add((line, target))
            edges.append((str(path.relative_to(REPO)), line, source, target))
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in a directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_every_module_is_on_a_known_floor() -> None:
    unplaced = sorted(
        str(path.relative_to(REPO))
        for path, module in project_modules()
        if module != "services" and package_of(module) not in FLOORS
    )
    assert not unplaced, f"modules in a package with no floor in FLOORS: {unplaced}"


def test_imports_point_only_down() -> None:
    wrong = [
        f"{file}:{line} imports {target} ({'up' if FLOORS[target] > FLOORS[source] else 'sideways'}"
        f": {source} is on floor {FLOORS[source]}, {target} on floor {FLOORS[target]})"
        for file, line, source, target in package_edges()
        if FLOORS[target] >= FLOORS[source] and (file, target) not in KNOWN_EXCEPTIONS
    ]
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for _, _, source, target in package_edges():
        graph.setdefault(source, set()).add(target)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_checker_sees_lazy_relative_and_submodule_imports() -> None:
    tree = ast.parse(
        "def f():\n"
        "    from services.router import rules\n"
        "from . import tokens\n"
        "from ..eventlog.retry import retrying\n"
        "import schemas.events\n"
    )
    names = {n for _, n in imported_modules(tree, module="services.domain.x", is_package=False)}
    assert {"services.router.rules", "services.domain.tokens", "services.eventlog.retry"} <= names
    assert "schemas.events" in names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
