"""The layout's rules, read from the source with `ast` (nothing is imported):

- the import graph of agents/, core/, config/ and scripts/ has no cycle: at module level (what the
  interpreter runs on import, `if TYPE_CHECKING:` blocks and package `__init__` re-exports included),
  and with the imports deferred into functions too (they hide a cycle from the interpreter, not from
  the design);
- `core` never imports `scripts`;
- `core.domain` (the pure domain) imports nothing that does I/O;
- no private name (a leading underscore) is imported from another module;
- every test file sits in tests/unit, tests/adapters or tests/e2e (tests/README.md says which).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.config import REPO_ROOT

PACKAGES = ("agents", "core", "config", "scripts")


@dataclass(frozen=True)
class Import:
    importer: str       # the importing module, dotted
    target: str         # the imported module (a submodule when `from pkg import sub` names one)
    name: str | None    # the name taken from it (`from target import name`), None for `import target`
    deferred: bool      # inside a function or class body
    line: int


def module_name(path: Path, root: Path = REPO_ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import statement of the module, resolved against the project's own modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(nodes: list[ast.stmt], deferred: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, alias.name, None, deferred, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    yield Import(name, sub if sub in modules else base, alias.name, deferred, node.lineno)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from walk(node.body, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        stmts = [c for child in children
                                 for c in (child.body if isinstance(child, ast.ExceptHandler) else [child])]
                        yield from walk([s for s in stmts if isinstance(s, ast.stmt)], deferred)

    yield from walk(tree.body, False)


def import_graph(modules: dict[str, Path], *, deferred: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports_of(name, path, modules):
            if imp.target in modules and imp.target != name and (deferred or not imp.deferred):
                graph[name].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(found: list[list[str]], graph: dict[str, set[str]]) -> str:
    return "\n".join(" <-> ".join(c) + ": " + "; ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c)
                     for c in found)


# ---------------------------------------------------------------------- the finder itself
def test_the_cycle_finder_finds_a_cycle_through_a_package_re_export(tmp_path: Path) -> None:
    (tmp_path / "core" / "pkg").mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "pkg" / "__init__.py").write_text("from core.pkg.a import A\n")
    (tmp_path / "core" / "pkg" / "a.py").write_text("from core.b import B\nA = 1\n")
    (tmp_path / "core" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                            "    from core.pkg import A\nB = 2\n")
    (tmp_path / "core" / "c.py").write_text("def f():\n    from core.d import D\n")
    (tmp_path / "core" / "d.py").write_text("from core import c\nD = 3\n")
    modules = {module_name(p, tmp_path): p for p in sorted((tmp_path / "core").rglob("*.py"))}
    module_level = cycles(import_graph(modules, deferred=False))
    assert module_level == [["core.b", "core.pkg", "core.pkg.a"]]
    assert sorted(cycles(import_graph(modules, deferred=True))) == [["core.b", "core.pkg", "core.pkg.a"],
                                                                   ["core.c", "core.d"]]


# ---------------------------------------------------------------------- the rules
def test_no_import_cycle_at_module_level() -> None:
    graph = import_graph(source_modules(), deferred=False)
    assert cycles(graph) == [], describe(cycles(graph), graph)


def test_no_import_cycle_with_deferred_imports_either() -> None:
    graph = import_graph(source_modules(), deferred=True)
    assert cycles(graph) == [], describe(cycles(graph), graph)


def test_core_never_imports_scripts() -> None:
    modules = source_modules()
    offending = [f"{imp.importer}:{imp.line} imports {imp.target}" for name, path in modules.items()
                 if name.split(".")[0] == "core" for imp in imports_of(name, path, modules)
                 if imp.target.split(".")[0] == "scripts"]
    assert offending == []


def test_no_private_name_is_imported_from_another_module() -> None:
    modules = source_modules()
    offending = []
    for name, path in modules.items():
        for imp in imports_of(name, path, modules):
            private = [part for part in [*imp.target.split("."), imp.name or ""]
                       if part.startswith("_") and not (part.startswith("__") and part.endswith("__"))]
            if private:
                offending.append(f"{name}:{imp.line} imports {imp.name or imp.target} from {imp.target}")
    assert offending == []


def test_every_test_file_is_in_its_kind_s_folder() -> None:
    tests = REPO_ROOT / "tests"
    stray = sorted(str(p.relative_to(tests)) for p in tests.rglob("test_*.py")
                   if p.relative_to(tests).parts[0] not in ("unit", "adapters", "e2e"))
    assert stray == []
    assert (tests / "README.md").is_file()


# The pure domain does no I/O: it imports the standard library's computing modules, numpy, pandas,
# pydantic, exchange_calendars (the bundled session table), the configuration's constants and itself.
DOMAIN_MAY_IMPORT = frozenset({
    "__future__", "abc", "bisect", "collections", "dataclasses", "datetime", "decimal", "enum", "fractions",
    "functools", "hashlib", "itertools", "json", "math", "numbers", "operator", "re", "secrets", "statistics",
    "string", "sys", "threading", "time", "types", "typing", "zoneinfo", "pathlib", "importlib",
    "numpy", "pandas", "pydantic", "exchange_calendars", "config", "core.domain",
})
DOMAIN_MUST_NOT_IMPORT = ("core.broker", "core.state", "core.sim", "core.runtime", "alpaca", "structlog", "sqlite3",
                          "socket", "requests", "urllib", "http", "subprocess", "agents", "scripts")


def domain_imports_outside(modules: dict[str, Path]) -> list[str]:
    offending = []
    for name, path in modules.items():
        if not name.startswith("core.domain"):
            continue
        for imp in imports_of(name, path, modules):
            allowed = any(imp.target == root or imp.target.startswith(root + ".") for root in DOMAIN_MAY_IMPORT)
            forbidden = any(imp.target == bad or imp.target.startswith(bad + ".") for bad in DOMAIN_MUST_NOT_IMPORT)
            if forbidden or not allowed:
                offending.append(f"{name}:{imp.line} imports {imp.target}")
    return offending


def test_the_domain_imports_nothing_that_does_io() -> None:
    assert domain_imports_outside(source_modules()) == []


def test_the_domain_rule_catches_a_broker_import(tmp_path: Path) -> None:
    (tmp_path / "core" / "domain").mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "domain" / "__init__.py").write_text("")
    (tmp_path / "core" / "domain" / "rule.py").write_text("import math\nfrom core.broker.factory import connect\n")
    modules = {module_name(p, tmp_path): p for p in sorted((tmp_path / "core").rglob("*.py"))}
    assert domain_imports_outside(modules) == ["core.domain.rule:2 imports core.broker.factory"]
