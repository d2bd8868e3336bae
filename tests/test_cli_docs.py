"""docs/cli.md is the ``--help`` of every command, as tools/gen_cli_docs.py writes it, and
must be regenerated when a command changes (the sqlite-utils habit)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from auditjournal.cli import load_commands
from shared import run_cli

TOOL = Path(__file__).resolve().parent.parent / "tools" / "gen_cli_docs.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_cli_docs"] = module
    spec.loader.exec_module(module)
    return module


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text of the code block under it."""
    found = re.findall(r"^## ([^\n]+)\n\n```text\n(.*?)\n```$", text, re.M | re.S)
    return {title: body + "\n" for title, body in found}


def test_committed_reference_is_current(gen: ModuleType) -> None:
    assert gen.DOC.exists(), "docs/cli.md missing: run python tools/gen_cli_docs.py"
    assert gen.DOC.read_text(encoding="utf-8") == gen.render(), (
        "docs/cli.md is stale: run python tools/gen_cli_docs.py and commit the result"
    )


def test_every_command_has_a_section(gen: ModuleType) -> None:
    documented = sections(gen.render())
    want = {"auditjournal"} | {f"auditjournal {name}" for name in load_commands()}
    assert set(documented) == want
    assert len(want) > 10


@pytest.mark.parametrize("name", sorted(load_commands()))
def test_a_section_is_what_help_prints_in_an_80_column_terminal(
    gen: ModuleType, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    printed = run_cli(capsys, name, "--help")  # the entry point, as the shell runs it
    assert printed.code == 0, printed.err
    assert printed.out.startswith(f"Usage: auditjournal {name} ")
    assert sections(gen.render())[f"auditjournal {name}"] == printed.out


@pytest.mark.parametrize("columns", ["40", "200"])
def test_the_reference_does_not_depend_on_the_terminal(
    gen: ModuleType, columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = gen.render()
    monkeypatch.setenv("COLUMNS", columns)
    assert gen.render() == reference


def test_the_command_table_names_each_command_s_module() -> None:
    """``auditjournal X`` imports only X's module (``_base.COMMAND_MODULES``): the table
    must list every command, with the module that defines it."""
    from auditjournal.cli._base import COMMAND_MODULES

    commands = load_commands()
    assert set(commands) == set(COMMAND_MODULES)
    for name, command in commands.items():
        assert command.callback is not None
        assert command.callback.__module__ == f"auditjournal.cli.{COMMAND_MODULES[name]}", name
