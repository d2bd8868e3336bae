"""tools/mutate.py makes the mutants it documents, each valid Python that differs from
the original in one place (the mutation run itself is not part of this suite)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "mutate.py"

SOURCE = '''
LIMIT = 10


def check(a, b, items):
    """Docstrings and f-strings are left alone."""
    if a < LIMIT and not b:
        raise ValueError(f"bad {a + 1}")
    for item in items:
        if item is None:
            continue
        if item == 3:
            break
    total = a + 1
    total += b
    print(items[1:2])
    assert total
    return (
        a >= 2
        or b
    )
'''


@pytest.fixture(scope="module")
def mutate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutate_tool"] = module
    spec.loader.exec_module(module)
    return module


def test_the_documented_operators_are_made(mutate: ModuleType) -> None:
    mutants = mutate.find_mutants(SOURCE)
    made = {(m.operator, m.before, m.after) for m in mutants}
    expected = {
        ("int+1", "10", "11"),
        ("compare", "a < LIMIT", "a <= LIMIT"),
        ("boolop", "a < LIMIT and not b", "a < LIMIT or not b"),
        ("drop-term", "a < LIMIT and not b", "not b"),
        ("drop-term", "a < LIMIT and not b", "a < LIMIT"),
        ("drop-not", "not b", "b"),
        ("if-true", "if a < LIMIT and not b:", "if True:"),
        ("if-false", "if a < LIMIT and not b:", "if False:"),
        ("compare", "item is None", "item is not None"),
        ("compare", "item == 3", "item != 3"),
        ("int+1", "1", "2"),
        ("delete", "total += b", "pass"),
        ("delete", "print(items[1:2])", "pass"),
        ("compare", "a >= 2", "a > 2"),
    }
    assert expected <= made, expected - made
    # the raise is the sole statement of its if (that is if-false); so are continue, break
    assert not [m for m in mutants if m.operator == "delete" and "raise" in m.before]
    assert not [m for m in mutants if m.operator == "delete" and m.before in ("continue", "break")]
    # docstrings, f-strings and asserts are left alone
    assert not [m for m in mutants if "f'bad" in m.after or m.line == 17]


def test_every_mutant_is_valid_python_changed_in_one_place(mutate: ModuleType) -> None:
    original = ast.dump(ast.parse(SOURCE))
    seen = set()
    for mutant in mutate.find_mutants(SOURCE):
        mutated, _ = mutate.mutate_source(SOURCE, mutant)
        tree = ast.parse(mutated)
        assert ast.dump(tree) != original, mutant
        seen.add(ast.dump(tree))
        compile(tree, "<mutant>", "exec")
    assert len(seen) == len(mutate.find_mutants(SOURCE))  # no two mutants alike


def test_a_multi_line_statement_is_looked_up_on_all_its_lines(mutate: ModuleType) -> None:
    (mutant,) = [
        m for m in mutate.find_mutants(SOURCE) if m.operator == "compare" and m.before == "a >= 2"
    ]
    assert (mutant.line, mutant.lines) == (18, [19])  # coverage records line 19, not 18


def test_skip_entries_match_line_operator_and_change(mutate: ModuleType) -> None:
    skip = mutate.Skip(re.compile(r"if a < LIMIT"), ("if-false",), None, "why")
    by_operator = {
        m.operator: skip.applies("    if a < LIMIT and not b:", m)
        for m in mutate.find_mutants(SOURCE)
        if m.line == 7
    }
    assert by_operator["if-false"] and not by_operator["if-true"]
    narrow = mutate.Skip(re.compile("LIMIT"), (), re.compile(r"-> not b$"), "why")
    (dropped,) = [
        m for m in mutate.find_mutants(SOURCE) if m.operator == "drop-term" and m.after == "not b"
    ]
    assert narrow.applies("    if a < LIMIT and not b:", dropped)
