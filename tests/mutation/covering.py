"""Which tests run which line of a mutated module: recorded once per session, looked up per mutant.

A test that never runs a statement cannot tell a mutant of that statement from the original (it runs
the same code up to the point where it would reach it, and never does), so a mutant inside a
function body needs only the tests that ran its statement. run.py records that map once per session
(the entry's tests under coverage.py, each test its own context, the processes they start measured
too, their context being the test that started them), then this script is cosmic-ray's test command:
it finds the lines the mutant changed and runs the tests that ran them, in the entry's order.

It runs the entry's whole command instead wherever the map cannot answer for certain: a change
outside a function body (a default, a decorator, a class or module constant: run at import, by every
test), a statement no recorded test ran (a process that died by a signal writes no coverage data),
or node ids pytest no longer finds. The map may still miss a run that only a process killed by
SIGKILL made, so a survivor this selection leaves is confirmed with the whole command before it is
called equivalent or harmless (tests/mutation/RESULTS.md says so).

Usage (what run.py writes into cosmic-ray's configuration)::

    python tests/mutation/covering.py MAP_DIR MODULE COMMAND

``MAP_DIR`` holds ``original.py`` (the module before any mutant) and ``map.json`` (the node ids in the
order they ran, and for each line of the module the ids of the tests that ran it);
``COMMAND`` is the entry's whole pytest command as one shell string.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

#: pytest's exit codes for "a node id was not found" (usage error) and "no tests collected".
_NOT_FOUND = {4, 5}

#: coverage.py's configuration for the recording run: every test its own context (set by the plugin
#: below), every Python process a test starts measured with the test's id as its context (pytest
#: keeps it in PYTEST_CURRENT_TEST, which the process inherits), only the mutated module.
_RC = """[run]
data_file = {data}
parallel = true
include = {module}
context = ${{PYTEST_CURRENT_TEST-}}
sigterm = true
"""


# -- the recording run: a pytest plugin (``-p covering``) -------------------------------

def pytest_runtest_protocol(item: Any, nextitem: Any) -> None:
    """Each test its own coverage context; the ids in the order they ran, for the selection's order.
    Returns None: pytest's own protocol then runs the test."""
    import coverage

    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(item.nodeid)
    order = os.environ.get("ML_DASH_MUTATION_ORDER")
    if order:
        with open(order, "a", encoding="utf-8") as out:
            out.write(item.nodeid + "\n")


def record(clone: Path, module: str, command: str, env: dict[str, str], map_dir: Path) -> subprocess.CompletedProcess:
    """Run ``command`` (the entry's pytest command) once under coverage in ``clone`` and write ``map_dir``'s
    ``original.py`` and ``map.json``. Returns the run (it is also the baseline: it must pass)."""
    import coverage

    map_dir.mkdir(parents=True, exist_ok=True)
    target = (clone / module).resolve()
    (map_dir / "original.py").write_bytes(target.read_bytes())
    rc = map_dir / "coveragerc"
    rc.write_text(_RC.format(data=map_dir / "coverage", module=target))
    order = map_dir / "order.txt"
    order.unlink(missing_ok=True)
    args = shlex.split(command)
    at = args.index("pytest") + 1
    # COVERAGE_PROCESS_START: coverage.py's .pth file starts measuring in every Python process, pytest's and
    # each one a test starts, reading the configuration as that process starts (so a child's context is
    # the test running then); this file is the plugin (``-p covering``), imported from beside run.py
    path = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(Path(__file__).resolve().parent)]))
    run = subprocess.run([*args[:at], "-p", "covering", *args[at:]], cwd=clone, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": path, "COVERAGE_PROCESS_START": str(rc),
                              "ML_DASH_MUTATION_ORDER": str(order)})
    subprocess.run([sys.executable, "-m", "coverage", "combine", f"--rcfile={rc}", "-q"], cwd=clone, env=env,
                   capture_output=True, text=True, check=False)
    data = coverage.CoverageData(basename=str(map_dir / "coverage"))
    data.read()
    ran = order.read_text(encoding="utf-8").splitlines() if order.exists() else []  # ids may hold spaces
    rank = {node: k for k, node in enumerate(dict.fromkeys(ran))}
    lines: dict[int, set[str]] = {}
    for measured in data.measured_files():
        if Path(measured).resolve() != target:
            continue
        for line, contexts in data.contexts_by_lineno(measured).items():
            lines.setdefault(line, set()).update(_node_id(c) for c in contexts)
    for nodes in lines.values():  # "": run outside any test (collection, imports)
        nodes.discard("")
    for node in sorted(set().union(*lines.values()) - set(rank)):  # never seen to start: last, but kept
        rank[node] = len(rank)
    table = {str(line): sorted(nodes, key=rank.__getitem__) for line, nodes in sorted(lines.items())}
    (map_dir / "map.json").write_text(json.dumps({"order": list(rank), "lines": table}))
    return run


def _node_id(context: str) -> str:
    """A context's test: ``nodeid`` (set by the plugin) or ``nodeid (call)`` (PYTEST_CURRENT_TEST in a
    process the test started); a recorded static part before ``|`` is dropped."""
    context = context.rsplit("|", 1)[-1]
    return context.rsplit(" (", 1)[0] if context.endswith(")") else context


# -- the per-mutant run ---------------------------------------------------------------------------------

def changed_lines(original: str, mutated: str) -> set[int]:
    """Line numbers (1-based, of ``original``) that the mutant replaced or removed, or where it inserted."""
    changed: set[int] = set()
    matcher = difflib.SequenceMatcher(a=original.splitlines(), b=mutated.splitlines(), autojunk=False)
    for tag, a1, a2, _, _ in matcher.get_opcodes():
        if tag != "equal":
            changed.update(range(a1 + 1, max(a2, a1 + 1) + 1))
    return changed


def statement_spans(source: str, lines: set[int]) -> list[tuple[int, int]] | None:
    """For each line, the lines of the innermost statement holding it, when that statement is inside a
    function body; None when any is not (run at import: every test depends on it)."""
    tree = ast.parse(source)
    inside: list[tuple[ast.stmt, bool]] = []  # every statement, and whether a function body holds it

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                inside.append((child, in_function))
            body_of_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            walk(child, in_function or body_of_function)

    walk(tree, False)
    spans = []
    for line in lines:
        holding = [(s, f) for s, f in inside if s.lineno <= line <= (s.end_lineno or s.lineno)]
        if not holding:
            return None
        stmt, in_function = min(holding, key=lambda sf: (sf[0].end_lineno or sf[0].lineno) - sf[0].lineno)
        # a def's own lines (decorators, defaults, signature) run when the enclosing code defines it
        if not in_function or (isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                               and line < stmt.body[0].lineno):
            return None
        spans.append((stmt.lineno, stmt.end_lineno or stmt.lineno))
    return spans


def selected(map_dir: Path, module: Path) -> list[str] | None:
    """The node ids to run for the module as it is now (mutated), in their recorded order; None: run all."""
    original = (map_dir / "original.py").read_text(encoding="utf-8")
    changed = changed_lines(original, module.read_text(encoding="utf-8"))
    spans = statement_spans(original, changed) if changed else None
    if spans is None:
        return None
    recorded = json.loads((map_dir / "map.json").read_text())
    table: dict[str, list[str]] = recorded["lines"]
    ids = {node for first, last in spans for line in range(first, last + 1) for node in table.get(str(line), ())}
    if not ids:
        return None
    rank = {node: k for k, node in enumerate(recorded["order"])}
    return sorted(ids, key=rank.__getitem__)


def main(argv: list[str]) -> int:
    map_dir, module, command = Path(argv[0]), Path(argv[1]), argv[2]
    nodes = selected(map_dir, module)
    if nodes is not None:
        args = shlex.split(command)
        files = {a for a in args if a.endswith(".py") and not a.startswith("-")}
        narrowed = [a for a in args if a not in files] + nodes
        done = subprocess.run(narrowed)
        if done.returncode not in _NOT_FOUND:
            return done.returncode
    return subprocess.run(command, shell=True).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
