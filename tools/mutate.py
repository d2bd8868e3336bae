"""Mutation testing: does a test fail when a check is removed or bent?

For each module named in ``tools/mutate.toml`` (or on the command line) this
makes small changes to the code one at a time (*mutants*) and runs the tests
chosen for that module against each. A mutant is *killed* when a test fails
(or the run times out), and *survives* when every test passes: then either
the change makes no observable difference (an equivalent mutant) or no test
pins the code it changed.

Operators (AST based, so formatting and comments do not matter):

* ``compare``: ``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not in``,
  ``is``/``is not`` swapped (the off-by-one at a boundary, the inverted test);
* ``boolop``: ``and``/``or`` swapped; ``drop-term``: one operand of an
  ``and``/``or`` removed (one half of a compound check gone); ``drop-not``;
* ``if-true`` / ``if-false``: an ``if`` condition replaced (a check always or
  never taken);
* ``delete``: a ``raise``, an early ``return``/``continue``/``break`` (not the
  sole statement of an ``if``: that is ``if-false``), a call statement or an
  augmented assignment replaced by ``pass``;
* ``int+1``: an integer constant plus one, where it is a module-level
  constant, a slice bound or a term of ``+``, ``-`` or ``*`` (the bounds of a
  comparison are covered by ``compare``);
* ``bool``: ``True``/``False`` swapped in an assignment or ``return``.

f-strings (messages), docstrings, annotations and ``assert`` statements are
left alone. Mutants on lines matching a ``skip`` pattern of the config (and
of its ``operators``, if it names any) are not run: they are equivalent (no
observable change) or beyond what a test can observe (an fsync), and are
listed with the reason written there.

Each mutant runs only the tests that executed its line in a baseline run with
per-test coverage (``pytest-cov`` contexts), with ``-x`` and a timeout, in a
private copy of the source tree (``PYTHONPATH``), at most ``--workers`` at a
time. Lines no selected test runs are reported as surviving ("not covered")
without a run.

    .venv/bin/python tools/mutate.py                     # every module in the config
    .venv/bin/python tools/mutate.py verify merkle       # some of them
    .venv/bin/python tools/mutate.py verify --list       # the mutants, not run
    .venv/bin/python tools/mutate.py verify --survivors  # re-run last run's survivors only
    .venv/bin/python tools/mutate.py --path src/x/y.py --tests tests/test_y.py

Results are written to ``.mutate/<module>.json``; exit status 1 when a module
kills less than ``--min-killed`` per cent (default from the config).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "tools" / "mutate.toml"
OUT_DIR = ROOT / ".mutate"

_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


@dataclass
class Mutant:
    index: int  # position in the module's mutant list (stable for the same source)
    node: int  # position of the mutated node in the traversal
    operator: str
    arg: int  # which operand/op of the node, where it has several
    line: int  # first line of the enclosing statement
    before: str
    after: str = ""
    lines: list[int] = field(default_factory=list)  # where coverage sees it run
    in_function: bool = True
    status: str = "pending"  # killed, survived, timeout, not covered, skipped, error
    note: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Skip:
    """Mutants not to run: equivalent by design, with the reason (from the config)."""

    line: re.Pattern[str]  # searched in the first line of the mutated statement
    operators: tuple[str, ...]  # the operators it applies to; all if empty
    change: re.Pattern[str] | None  # searched in "before -> after", if given
    why: str

    def applies(self, text: str, mutant: Mutant) -> bool:
        if self.line.search(text) is None:
            return False
        if self.operators and mutant.operator not in self.operators:
            return False
        return self.change is None or bool(self.change.search(f"{mutant.before} -> {mutant.after}"))


@dataclass
class Target:
    name: str
    path: Path
    tests: list[str]
    skip: list[Skip] = field(default_factory=list)
    # run for every mutant in a function: tests whose code runs in worker processes,
    # which the per-test coverage of the baseline does not see
    always: list[str] = field(default_factory=list)


# -- finding mutants --------------------------------------------------------------------------


@dataclass
class _Site:
    node: ast.AST
    parent: ast.AST | None
    field: str
    pos: int | None  # index in the parent's list field
    stmt: ast.stmt | None
    in_function: bool


def _walk(tree: ast.Module) -> Iterator[_Site]:
    """Every node where mutants may go, in a fixed order (the same for the same source)."""

    def visit(
        node: ast.AST,
        parent: ast.AST | None,
        fld: str,
        pos: int | None,
        stmt: ast.stmt | None,
        in_function: bool,
    ) -> Iterator[_Site]:
        if isinstance(node, ast.Assert | ast.JoinedStr):
            return
        if isinstance(node, ast.stmt):
            stmt = node
        yield _Site(node, parent, fld, pos, stmt, in_function)
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment"):
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and name == "args":
                inner_here = in_function  # default values run at definition time
            else:
                inner_here = inner
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        yield from visit(item, node, name, i, stmt, inner_here)
            elif isinstance(value, ast.AST):
                yield from visit(value, node, name, None, stmt, inner_here)

    yield from visit(tree, None, "", None, None, False)


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _sole_if_body(site: _Site) -> bool:
    return isinstance(site.parent, ast.If) and site.field == "body" and len(site.parent.body) == 1


def _int_context(site: _Site) -> bool:
    """An int constant worth bending: a module-level constant, or arithmetic/slice/compare."""
    parent = site.parent
    if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Add | ast.Sub | ast.Mult):
        return True
    if isinstance(parent, ast.Slice | ast.UnaryOp):
        return True  # slice bounds, negative constants
    return not site.in_function and isinstance(parent, ast.Assign | ast.AnnAssign)


def _operators(site: _Site) -> Iterator[tuple[str, int]]:
    node = site.node
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _SWAP:
                yield "compare", i
    elif isinstance(node, ast.BoolOp):
        yield "boolop", 0
        for i in range(len(node.values)):
            yield "drop-term", i
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "drop-not", 0
    elif isinstance(node, ast.If):
        yield "if-true", 0
        yield "if-false", 0
    elif isinstance(node, ast.Raise | ast.Return | ast.Continue | ast.Break):
        nested = not isinstance(site.parent, ast.FunctionDef | ast.AsyncFunctionDef)
        if not _sole_if_body(site) and (isinstance(node, ast.Raise) or nested):
            yield "delete", 0
    elif isinstance(node, ast.Expr) and not _is_docstring(node):
        if isinstance(node.value, ast.Call | ast.Await) and site.in_function:
            yield "delete", 0
    elif isinstance(node, ast.AugAssign) and site.in_function:
        yield "delete", 0
    elif isinstance(node, ast.Constant):
        if type(node.value) is int and _int_context(site):
            yield "int+1", 0
        elif type(node.value) is bool and isinstance(
            site.parent, ast.Assign | ast.AnnAssign | ast.Return
        ):
            yield "bool", 0


def _replace(site: _Site, new: ast.AST) -> None:
    assert site.parent is not None
    if site.pos is None:
        setattr(site.parent, site.field, new)
    else:
        getattr(site.parent, site.field)[site.pos] = new


def _apply(site: _Site, operator: str, arg: int) -> ast.AST:
    """Mutate the tree at ``site``; return the node that now stands there."""
    node = site.node
    if operator == "compare":
        assert isinstance(node, ast.Compare)
        node.ops[arg] = _SWAP[type(node.ops[arg])]()
        return node
    if operator == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return node
    if operator == "drop-term":
        assert isinstance(node, ast.BoolOp)
        del node.values[arg]
        if len(node.values) == 1:
            _replace(site, node.values[0])
            return node.values[0]
        return node
    if operator == "drop-not":
        assert isinstance(node, ast.UnaryOp)
        _replace(site, node.operand)
        return node.operand
    if operator in ("if-true", "if-false"):
        assert isinstance(node, ast.If)
        node.test = ast.Constant(operator == "if-true")
        return node.test
    if operator == "delete":
        new = ast.Pass()
        _replace(site, new)
        return new
    if operator == "int+1":
        assert isinstance(node, ast.Constant)
        node.value += 1
        return node
    if operator == "bool":
        assert isinstance(node, ast.Constant)
        node.value = not node.value
        return node
    raise ValueError(operator)


def _run_lines(site: _Site) -> list[int]:
    """The lines whose execution runs the mutated code: for a compound statement its
    header (an ``if``'s condition), else the node's own lines. Python puts a multi-line
    statement's bytecode on the lines of its parts, not on its first line."""
    node = site.node
    if isinstance(node, ast.If | ast.While):
        node = node.test
    elif isinstance(node, ast.stmt) and hasattr(node, "body"):
        return [node.lineno]
    first = getattr(node, "lineno", None)
    if first is None:
        return []
    last = getattr(node, "end_lineno", None) or first
    return list(range(first, last + 1))


def find_mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    mutants = []
    for number, site in enumerate(_walk(tree)):
        for operator, arg in _operators(site):
            line = site.stmt.lineno if site.stmt is not None else 0
            before = ast.get_source_segment(source, site.node) or ast.unparse(site.node)
            mutants.append(
                Mutant(
                    len(mutants),
                    number,
                    operator,
                    arg,
                    line,
                    before.split("\n")[0][:100],
                    lines=_run_lines(site),
                    in_function=site.in_function,
                )
            )
    for mutant in mutants:
        _, after = mutate_source(source, mutant)
        mutant.after = after.split("\n")[0][:100]
    return mutants


def mutate_source(source: str, mutant: Mutant) -> tuple[str, str]:
    """The module's source with ``mutant`` applied, and the mutated node's text."""
    tree = ast.parse(source)
    for number, site in enumerate(_walk(tree)):
        if number == mutant.node:
            new = _apply(site, mutant.operator, mutant.arg)
            after = "pass" if isinstance(new, ast.Pass) else ast.unparse(new)
            if isinstance(site.node, ast.If):
                after = f"if {after}:"
            return ast.unparse(ast.fix_missing_locations(tree)) + "\n", after
    raise ValueError(f"no node {mutant.node}")


# -- running ----------------------------------------------------------------------------------


_PYTEST_ARGS = ["-q", "-x", "-p", "no:cacheprovider", "--hypothesis-seed=0"]


def _pytest(python: str, args: list[str]) -> list[str]:
    return [python, "-m", "pytest", *_PYTEST_ARGS, *args]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Exit code (None on timeout) and the output's tail; the whole process group dies."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace")[-3000:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, ""


_PRELOAD = (
    "pytest",
    "hypothesis",
    "msgspec",
    "sqlalchemy",
    "click",
    "watchdog.observers",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "rfc8785",
)


def serve(src: str) -> None:
    """A worker: import the test tools once, then fork a fresh child per mutant run.

    The child puts ``src`` (the worker's copy of the source tree) first on
    ``sys.path`` and imports the package from there, so each run sees the
    mutated module without paying the interpreter and library start-up again.
    Reads one JSON job per line (``args``, ``timeout``, ``log``); answers ``code``.
    """
    import importlib

    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run pytest on the mutated tree, never return
            try:
                os.setsid()
                fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.path.insert(0, src)
                import pytest

                code = int(pytest.main(job["args"]))
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                code = 3
            os._exit(code)
        deadline = time.monotonic() + job["timeout"]
        code: int | None = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):  # what the run started dies with it
            os.killpg(pid, signal.SIGKILL)
        print(json.dumps({"code": code}), flush=True)


class _Worker:
    """One ``serve`` process with its own copy of the source tree."""

    def __init__(self, python: str, copy: Path, src_name: str) -> None:
        self.copy = copy
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVERAGE_FILE")}
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--serve", str(copy / src_name)],
            cwd=copy,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, args: list[str], timeout: float) -> tuple[int | None, str]:
        log = self.copy / "pytest.log"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(
            json.dumps({"args": args, "timeout": timeout, "log": str(log)}) + "\n"
        )
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["code"], log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def baseline(target: Target, python: str, work: Path) -> tuple[dict[int, list[str]], float]:
    """Run the selection once with per-test coverage: which tests run each line, and how long."""
    data_file = work / f"coverage-{target.name}"
    package = target.path.parent
    src_root = ROOT / target.path.resolve().relative_to(ROOT).parts[0]
    # this tree's package, whatever the environment has installed (the workers do the same)
    env = {**os.environ, "COVERAGE_FILE": str(data_file), "PYTHONPATH": str(src_root)}
    start = time.monotonic()
    code, out = _run(
        _pytest(python, [f"--cov={package}", "--cov-context=test", "--cov-report=", *target.tests]),
        ROOT,
        env,
        timeout=3600,
    )
    elapsed = time.monotonic() - start
    if code != 0:
        sys.exit(f"{target.name}: the tests fail without any mutant:\n{out}")
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    wanted = str(target.path.resolve())
    measured = next((f for f in data.measured_files() if os.path.realpath(f) == wanted), None)
    if measured is None:
        sys.exit(f"{target.name}: the tests never import {target.path}")
    by_line: dict[int, list[str]] = {}
    for line, contexts in data.contexts_by_lineno(measured).items():
        tests = []
        for ctx in contexts:
            test = ctx.rsplit("|", 1)[0]
            if test not in tests:
                tests.append(test)
        by_line[line] = tests
    return by_line, elapsed


def run_target(
    target: Target, python: str, workers: int, only: set[int] | None, timeout_floor: float
) -> list[Mutant]:
    source = target.path.read_text()
    mutants = find_mutants(source)
    relative = target.path.resolve().relative_to(ROOT)
    src_root = ROOT / relative.parts[0]  # e.g. src/: what goes on PYTHONPATH
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        work = Path(tmp)
        by_line, seconds = baseline(target, python, work)
        timeout = max(timeout_floor, 3 * seconds + 10)
        free: list[_Worker] = []
        for n in range(workers):
            copy = work / f"w{n}"
            shutil.copytree(
                src_root,
                copy / src_root.name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
            free.append(_Worker(python, copy, src_root.name))
        everyone = list(free)
        lock = threading.Lock()
        todo = []
        for m in mutants:
            if only is not None and m.index not in only:
                m.status = "not run"
                continue
            text = source.splitlines()[m.line - 1] if m.line else ""
            reason = next((skip.why for skip in target.skip if skip.applies(text, m)), None)
            if reason is not None:
                m.status, m.note = "skipped", reason
            elif (
                m.in_function and not target.always and not any(line in by_line for line in m.lines)
            ):
                m.status, m.note = "survived", "not covered by the selected tests"
            else:
                todo.append(m)

        def one(m: Mutant) -> None:
            with lock:
                worker = free.pop()
            copy = worker.copy
            try:
                mutated, _ = mutate_source(source, m)
                (copy / relative).write_text(mutated)
                tests = []
                for line in m.lines if m.in_function else []:
                    tests += [t for t in by_line.get(line, []) if t not in tests]
                tests += [t for t in target.always if t not in tests]
                if not tests or "" in tests:
                    tests = list(target.tests)  # import-time code: every test
                else:  # the config's order: list the quick, pointed tests first (-x)
                    order = {t: i for i, t in enumerate(target.tests)}
                    tests = sorted(tests, key=lambda t: order.get(t.split("::")[0], len(order)))
                tests = [f"{ROOT}/{t}" for t in tests]  # node ids are relative to the root
                started = time.monotonic()
                code, out = worker.run([*_PYTEST_ARGS, *tests], timeout)
                m.seconds = round(time.monotonic() - started, 2)
                if code is None:
                    m.status = "timeout"
                elif code in (1, 2):  # a test failed, or the module no longer imports
                    m.status = "killed"
                    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
                    m.note = failed.group(1) if failed else f"exit {code}"
                elif code == 0:
                    m.status = "survived"
                    m.note = f"{len(tests)} tests ran"
                else:
                    m.status, m.note = "error", f"pytest exit {code}: {out[-500:]}"
                print(
                    f"  {target.name} #{m.index} line {m.line} {m.operator}: {m.status}", flush=True
                )
            finally:
                (copy / relative).write_text(source)
                with lock:
                    free.append(worker)

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, todo))
        finally:
            for worker in everyone:
                worker.close()
    return mutants


# -- config and report ------------------------------------------------------------------------


def load_targets(config: Path, names: list[str]) -> tuple[list[Target], dict[str, Any]]:
    settings = tomllib.loads(config.read_text())
    modules = settings.get("modules", {})
    unknown = [n for n in names if n not in modules]
    if unknown:
        sys.exit(f"unknown module(s) {', '.join(unknown)}; the config names {', '.join(modules)}")
    targets = []
    for name, spec in modules.items():
        if names and name not in names:
            continue
        skip = [
            Skip(
                re.compile(s["pattern"]),
                tuple(s.get("operators", ())),
                re.compile(s["change"]) if "change" in s else None,
                s["why"],
            )
            for s in spec.get("skip", [])
        ]
        tests = [t for t in spec["tests"] if (ROOT / t.split("::")[0]).exists()]
        for missing in sorted(set(spec["tests"]) - set(tests)):
            print(f"{name}: {missing} does not exist (left out)", file=sys.stderr)
        always = [t for t in spec.get("always", []) if (ROOT / t.split("::")[0]).exists()]
        targets.append(Target(name, ROOT / spec["path"], tests, skip, always))
    return targets, settings.get("defaults", {})


def summarize(target: Target, mutants: list[Mutant]) -> tuple[int, int]:
    counted = [m for m in mutants if m.status not in ("skipped", "not run")]
    killed = sum(m.status in ("killed", "timeout") for m in counted)
    skipped = sum(m.status == "skipped" for m in mutants)
    share = 100 * killed / len(counted) if counted else 100.0
    print(
        f"{target.name}: {killed}/{len(counted)} killed ({share:.1f} %), "
        f"{skipped} skipped as equivalent (config) = {killed}/{len(counted) + skipped} of all"
    )
    for m in mutants:
        if m.status in ("survived", "error"):
            print(
                f"  SURVIVED #{m.index} {target.path.name}:{m.line} {m.operator}: "
                f"{m.before!r} -> {m.after!r} ({m.note})"
            )
    return killed, len(counted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module names from the config (default: all)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--path", type=Path, help="a module file instead of the config")
    parser.add_argument("--tests", nargs="+", help="with --path: the tests to run")
    parser.add_argument("--workers", type=int, help="parallel mutants (default from config)")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--ids", help="only these mutant numbers (comma separated)")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="only the mutants that survived the last run (.mutate/<module>.json)",
    )
    parser.add_argument("--min-killed", type=float, help="per cent; exit 1 below it")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    if args.path is not None:
        if not args.tests:
            parser.error("--path needs --tests")
        targets = [Target(args.path.stem, args.path.resolve(), args.tests)]
        defaults: dict[str, Any] = {}
    else:
        targets, defaults = load_targets(args.config, args.modules)
    workers = args.workers or int(defaults.get("workers", 2))
    min_killed = (
        args.min_killed if args.min_killed is not None else float(defaults.get("min_killed", 90))
    )
    timeout_floor = float(defaults.get("timeout_floor", 60))
    OUT_DIR.mkdir(exist_ok=True)
    failed = False
    for target in targets:
        if args.list:
            for m in find_mutants(target.path.read_text()):
                print(
                    f"{target.name} #{m.index} line {m.line} {m.operator}: "
                    f"{m.before!r} -> {m.after!r}"
                )
            continue
        only = None
        if args.ids:
            only = {int(i) for i in args.ids.split(",")}
        elif args.survivors:
            previous = json.loads((OUT_DIR / f"{target.name}.json").read_text())
            only = {m["index"] for m in previous["mutants"] if m["status"] == "survived"}
        started = time.monotonic()
        mutants = run_target(target, args.python, workers, only, timeout_floor)
        if only is not None:
            # merge with the previous full run so the file keeps the whole picture
            path = OUT_DIR / f"{target.name}.json"
            if path.exists():
                previous = {m["index"]: m for m in json.loads(path.read_text())["mutants"]}
                for m in mutants:
                    if m.status == "not run" and m.index in previous:
                        old = previous[m.index]
                        if (old["before"], old["operator"]) == (m.before, m.operator):
                            m.status, m.note = old["status"], old["note"]
        (OUT_DIR / f"{target.name}.json").write_text(
            json.dumps(
                {
                    "module": str(target.path.relative_to(ROOT)),
                    "tests": target.tests,
                    "seconds": round(time.monotonic() - started),
                    "mutants": [asdict(m) for m in mutants],
                },
                indent=1,
            )
        )
        killed, total = summarize(target, mutants)
        if total and 100 * killed / total < min_killed:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
