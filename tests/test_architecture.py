"""The package's shape (docs/architecture.md): no import cycles, imports flow one way
from stage to stage, nothing outside ``journal/`` reaches past the backend seam, and
every module stays under the size limit.

Imports are read from the source (``ast``), every one of them: at module level, inside
functions, and under ``TYPE_CHECKING`` (a type-only import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import auditjournal

PACKAGE = Path(auditjournal.__file__).parent
MAX_LINES = 600

STAGES: list[set[str]] = [
    {"errors"},
    {"model"},
    {"fs"},
    {"journal", "payloads"},
    {"proofs"},
    {"export"},
    {"sql"},
    {"projection"},
    {"recording"},
    {"evidence", "landscape"},  # both built on the recorder's store; neither imports the other
    {"demo"},
    {"__init__"},  # the public API: auditjournal/__init__.py
    {"integrations", "report"},
    {"cli"},
    {"__main__"},
]
"""The stages in data-path order; a module may import its own stage and earlier ones."""

JOURNAL_SEAM = {
    "auditjournal.journal.base",
    "auditjournal.journal.filebackend",
    "auditjournal.journal.pgbackend",
}
"""What code outside ``journal/`` may import from it: the seam and each backend's public
module (its factory; the public API re-exports more)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str:
    parts = module.split(".")
    if parts == ["auditjournal"] or parts == ["auditjournal", "__init__"]:
        return "__init__"
    return parts[1]


def rank(module: str) -> int:
    stage = stage_of(module)
    for index, stages in enumerate(STAGES):
        if stage in stages:
            return index
    raise AssertionError(f"{module}: stage {stage!r} is not in STAGES (add it, in order)")


def imports_of(path: Path, module: str) -> Iterator[str]:
    """The auditjournal modules ``path`` imports (``from x import name``: ``x.name`` when
    that is a module, else ``x``)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("auditjournal"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("auditjournal"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if sub in MODULES else target


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {m: sorted(set(imports_of(p, m)) - {m}) for m, p in MODULES.items()}


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in graph.get(node, []):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_walk_sees_every_stage() -> None:
    assert {stage_of(m) for m in MODULES} <= set().union(*STAGES)
    assert len(MODULES) > 50 and sum(map(len, GRAPH.values())) > 200


def test_no_import_cycles() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_no_stage_imports_a_later_stage() -> None:
    backwards = [
        f"{module} ({stage_of(module)}) imports {target} ({stage_of(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if rank(target) > rank(module)
    ]
    assert backwards == []


def test_the_stage_check_refuses_a_back_import() -> None:
    assert rank("auditjournal.sql.lineage") > rank("auditjournal.export.projector")
    assert rank("auditjournal.recording.store") > rank("auditjournal.projection.live")


def test_peer_stages_do_not_import_each_other() -> None:
    peers = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if stage_of(module) != stage_of(target) and rank(module) == rank(target)
    ]
    assert peers == []


def test_only_the_journal_package_reaches_past_the_seam() -> None:
    reaching = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if stage_of(module) not in ("journal", "__init__")
        for target in targets
        if target.startswith("auditjournal.journal.") and target not in JOURNAL_SEAM
    ]
    assert reaching == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_under_the_size_limit(module: str) -> None:
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines (split it along a real seam)"
