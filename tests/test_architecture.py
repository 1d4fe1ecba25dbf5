"""The layout keeps its promises: docs/architecture.md names every module (empty package files
aside), and imports follow the layers: no stage imports one to its right, `bench` never imports
`cli`, `report`, `sweep`, `dataset`, `api` or `sim`; `sweep` only `bench` and the bottom; `report`
never `dataset` or `api`; `dataset` never `api`; nothing but `cli` imports `cli`; `import tmesh`
loads no layer (the API's names are loaded on use); no cycles; no import hidden in a function
outside `cli` and the API's loading of the report on use."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tmesh

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


def _imports(path: Path) -> tuple[set[str], set[str], set[str]]:
    """tmesh modules imported at module level, inside a function, and for type checking only
    (under `if TYPE_CHECKING:`, never run)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    top: set[str] = set()
    nested: set[str] = set()
    checked: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tmesh"):
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            target = {name if name in MODULES else node.module for name in names}
        elif isinstance(node, ast.Import):
            target = {a.name for a in node.names if a.name.startswith("tmesh")}
        else:
            continue
        if id(node) in typing_only:
            checked.update(target)
        else:
            (top if node in tree.body else nested).update(target)
    return top, nested, checked


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
    top, nested, checked = IMPORTS[name]
    imported = top | nested | checked
    above_bench = (
        "tmesh.cli",
        "tmesh.report",
        "tmesh.sweep",
        "tmesh.dataset",
        "tmesh.api",
        "tmesh.sim",
    )
    if _within(name, "tmesh.bench"):
        assert not any(_within(i, p) for i in imported for p in above_bench), imported
    if not _within(name, "tmesh.cli"):
        assert not any(_within(i, "tmesh.cli") for i in imported), imported
    if name == "tmesh":
        assert top == {"tmesh.report"}, top
        assert nested == set(), nested
        assert checked == {*tmesh._PUBLIC.values(), "tmesh.api.runs"}, checked
        return
    if _within(name, "tmesh.dataset"):
        allowed = ("tmesh.dataset", "tmesh.report", "tmesh.results", *BOTTOM)
        assert all(any(_within(i, a) for a in allowed) for i in imported), imported
    if _within(name, "tmesh.api"):
        assert all(_within(i, "tmesh.report") for i in nested), nested
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
    if not _within(name, "tmesh.cli") and not _within(name, "tmesh.api"):
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
