"""The layout keeps its promises: docs/architecture.md names every module (empty package files
aside), and imports follow the
pipeline (no stage imports one to its right, `bench` never imports `cli`, `report`, `sweep` or
`sim`, `sweep` only `bench` and the bottom, no cycles, no import hidden in a function outside
`cli`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tmesh"
MAP = ROOT / "docs" / "architecture.md"
STAGES = ("endpoint", "workload", "load", "measure", "output")
BOTTOM = ("tmesh.results", "tmesh.text", "tmesh.fieldspec", "tmesh")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """tmesh modules imported at module level, and those imported inside a function."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tmesh"):
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            target = {name if name in MODULES else node.module for name in names}
        elif isinstance(node, ast.Import):
            target = {a.name for a in node.names if a.name.startswith("tmesh")}
        else:
            continue
        (top if node in tree.body else nested).update(target)
    return top, nested


MODULES = _modules()
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_map_names_every_module_and_only_modules_that_exist() -> None:
    text = MAP.read_text()
    named = set(re.findall(r"^- `((?:[a-z_]+/)*[a-z_]+\.py)`", text, re.MULTILINE))
    on_disk = {str(p.relative_to(PACKAGE)) for p in MODULES.values() if p.stat().st_size}
    assert on_disk - named == set(), "modules missing from docs/architecture.md"
    assert named - on_disk == set(), "docs/architecture.md names modules that do not exist"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_follow_the_layers(name: str) -> None:
    top, nested = IMPORTS[name]
    imported = top | nested
    if _within(name, "tmesh.bench"):
        assert not any(
            _within(i, p) for i in imported for p in ("tmesh.cli", "tmesh.report", "tmesh.sweep")
        )
        assert not any(_within(i, "tmesh.sim") for i in imported)
    if _within(name, "tmesh.sim"):
        assert all(_within(i, "tmesh.sim") or i in BOTTOM for i in imported), imported
    if _within(name, "tmesh.results") or name in ("tmesh.text", "tmesh.fieldspec"):
        assert all(any(_within(i, b) for b in BOTTOM) for i in imported), imported
    if _within(name, "tmesh.sweep"):
        allowed = ("tmesh.sweep", "tmesh.bench", "tmesh.results", *BOTTOM)
        assert all(any(_within(i, a) for a in allowed) for i in imported), imported
    if _within(name, "tmesh.report"):
        allowed = ("tmesh.report", "tmesh.results", "tmesh.bench.measure", *BOTTOM)
        assert all(any(_within(i, a) for a in allowed) for i in imported), imported
    stage = next((s for s in STAGES if _within(name, f"tmesh.bench.{s}")), None)
    if stage is not None:
        right = STAGES[STAGES.index(stage) + 1 :]
        assert not any(_within(i, f"tmesh.bench.{s}") for i in imported for s in right), imported
        assert not any(_within(i, m) for i in imported for m in ("tmesh.bench.run",))
    if not _within(name, "tmesh.cli"):
        assert nested == set(), f"{name} imports inside a function: {nested}"


def test_no_import_cycles() -> None:
    graph = {name: {i for i in IMPORTS[name][0] if i in MODULES and i != name} for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AssertionError(" -> ".join((*path[path.index(name) :], name)))
        if name in done:
            return
        for other in graph[name]:
            visit(other, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
