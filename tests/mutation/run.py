"""The mutation check: cosmic-ray over the modules that carry guarantees, each against its tests.

Usage: ``python tests/mutation/run.py [NAME ...]`` (names from modules.toml; all by default). Each
module is mutated in a fresh clone of HEAD (the working tree is never touched) and its tests run
once per mutant; the table says how many mutants each module had, how many the tests killed, and
where the survivors' diffs are. Slow (minutes per module on 2 cores): not part of CI.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib
from covering import record  # beside this script (run as a script: its folder is on sys.path)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PER_MUTANT_TIMEOUT_S = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="modules.toml entries (default: all)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ml-dash-mutation",
                        help="where the sessions and survivors' diffs go (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each module's session in --out where it stopped (its killed mutants stand, its "
                             "survivors are tried again) "
                             "instead of starting it afresh; refused for a module changed since that session")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop each module's mutants after this long (the session can be resumed)")
    parser.add_argument("--pending-only", action="store_true",
                        help="with --resume: run only the mutants not run yet, keeping the survivors' results")
    parser.add_argument("--whole", action="store_true",
                        help="run each mutant against the entry's whole test command, not only the tests that ran "
                             "its statement (with --resume: confirm the survivors the selection left)")
    args = parser.parse_args()
    if importlib.util.find_spec("cosmic_ray") is None:  # not in the dev extra: said here, not as a traceback
        parser.error('cosmic-ray is not installed: pip install -e ".[dev,mutation]" (docs/development.md)')
    if not args.whole and importlib.util.find_spec("coverage") is None:  # the selection's map needs it
        parser.error('coverage is not installed: pip install -e ".[dev,mutation]" (or run with --whole)')
    table = tomllib.loads((HERE / "modules.toml").read_text())
    unknown = set(args.names) - set(table)
    if unknown:
        parser.error(f"unknown module entries {sorted(unknown)}; known: {sorted(table)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pending_only and not args.resume:
        parser.error("--pending-only goes with --resume")
    rows = [check(name, table[name], args.out, args.resume, args.minutes, args.whole, args.pending_only)
            for name in (args.names or list(table))]
    print(f"\n{'module':<16} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'annotations':>12}  survivors")
    for name, counts, survivors in rows:
        print(f"{name:<16} {counts['total']:>8} {counts['killed']:>7} {counts['survived']:>9} {counts['other']:>6}"
              f" {counts['annotations']:>12}  {survivors}")
    return 0


def check(name: str, entry: dict[str, str], out: Path, resume: bool = False,
          minutes: float | None = None, whole: bool = False,
          pending_only: bool = False) -> tuple[str, dict[str, int], Path]:
    clone = Path(tempfile.mkdtemp(prefix=f"ml-dash-mutation-{name}-"))
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        _copy_extension(clone)
        _map_package_dirs(clone)
        config = clone / "cosmic-ray.toml"
        whole_command = _test_command(entry["tests"])
        map_dir = clone / ".mutation"
        # each mutant runs the tests that ran its statement (covering.py), or the whole command
        command = whole_command if whole else " ".join(shlex.quote(part) for part in [
            sys.executable, str(HERE / "covering.py"), str(map_dir), entry["module"], whole_command])
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(entry['module'])}\n"
            f"timeout = {PER_MUTANT_TIMEOUT_S}.0\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(command)}\n"
            "[cosmic-ray.distributor]\nname = \"local\"\n")
        session = out / f"{name}.sqlite"
        env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's ml_dash, in the tests and their subprocesses
        # a session's mutants are places in the module as it was: it resumes only over the same text
        digest = hashlib.sha256((clone / entry["module"]).read_bytes()).hexdigest()
        stamp = out / f"{name}.module-sha256"
        if resume and session.exists() and stamp.exists() and stamp.read_text() != digest:
            raise SystemExit(f"{name}: {entry['module']} changed since its session in {out}; run without --resume")
        _check_imported_from(clone, entry["module"], env)
        # the tests must pass on the module as it is: else every mutant would count as killed (the run that
        # records which tests cover which line is that check, under coverage)
        baseline = (subprocess.run(whole_command, shell=True, cwd=clone, env=env, capture_output=True, text=True)
                    if whole else record(clone, entry["module"], whole_command, env, map_dir))
        if baseline.returncode != 0:
            raise SystemExit(f"{name}: its tests fail without any mutant:\n{baseline.stdout[-3000:]}")
        if resume and session.exists():  # its survivors are tried again: tests may have been added since
            if not pending_only:
                with sqlite3.connect(session) as db:
                    db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
        else:
            session.unlink(missing_ok=True)
            stamp.write_text(digest)
            subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(config), str(session)], cwd=clone,
                           env=env, check=True, stdout=subprocess.DEVNULL)
        skipped = _skip_annotations(session, clone / entry["module"])
        try:
            subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "exec", str(config), str(session)], cwd=clone,
                           env=env, check=True, stdout=subprocess.DEVNULL,
                           timeout=None if minutes is None else minutes * 60)
        except subprocess.TimeoutExpired:
            print(f"{name}: stopped after {minutes} minutes; --resume continues it", file=sys.stderr)
        # the console script beside this interpreter (cosmic-ray's own module has no __main__): it is on
        # PATH only inside an activated environment
        report = subprocess.run([str(Path(sys.executable).parent / "cr-report"), "--show-diff", str(session)],
                                capture_output=True, text=True, check=True).stdout
        survivors = out / f"{name}-survivors.txt"
        survivors.write_text("\n".join(_survivor_blocks(report)))
        return name, {**_counts(session), "annotations": skipped}, survivors
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def _test_command(tests: str) -> str:
    """pytest over the entry's tests: stop at the first failure, in file order, no cache in the clone, at
    most a minute a test."""
    # --timeout: a mutant that makes a loop endless fails its test in a minute, not cosmic-ray's five
    return f"{sys.executable} -m pytest -x -q -p no:randomly -p no:cacheprovider --timeout=60 {tests}"


def _copy_extension(clone: Path) -> None:
    """The C hot path as built here (the clone has only its source), so native tests run, not skip."""
    import ml_dash

    for built in Path(ml_dash.__file__).parent.glob("_fastlog*.so"):
        shutil.copy2(built, clone / "ml_dash" / built.name)


def _map_package_dirs(clone: Path) -> None:
    """Link each package pyproject.toml installs from another folder (``ml_dash.agent`` from agent/) into
    the clone's package tree. The editable install maps ``ml_dash.agent`` to *this* checkout's agent/ (an
    import hook after the path): without the link the tests import the unmutated agent/ of the working
    tree, and every mutant of agent/ survives."""
    mapping = tomllib.loads((clone / "pyproject.toml").read_text()).get("tool", {}).get("setuptools", {}).get(
        "package-dir", {})
    for package, folder in mapping.items():
        if not package:  # "" = "src" style: the whole tree, nothing to link
            continue
        link = clone.joinpath(*package.split("."))
        if not link.exists():
            link.symlink_to(os.path.relpath(clone / folder, link.parent), target_is_directory=True)


def _check_imported_from(clone: Path, module: str, env: dict[str, str]) -> None:
    """Refuse to run when the module the tests import is not the clone's file that cosmic-ray mutates."""
    dotted = _dotted_name(clone, module)
    origin = subprocess.run([sys.executable, "-c", f"import importlib.util as u; print(u.find_spec({dotted!r}).origin)"],
                            cwd=clone, env=env, capture_output=True, text=True, check=True).stdout.strip()
    if Path(origin).resolve() != (clone / module).resolve():
        raise SystemExit(f"{module}: the tests would import {dotted} from {origin}, not from the mutated clone")


def _dotted_name(clone: Path, module: str) -> str:
    """The import name of ``module`` (a path in the repository), with pyproject.toml's package-dir mapping."""
    mapping = tomllib.loads((clone / "pyproject.toml").read_text()).get("tool", {}).get("setuptools", {}).get(
        "package-dir", {})
    parts = list(Path(module).with_suffix("").parts)
    for package, folder in mapping.items():
        folder_parts = list(Path(folder).parts)
        if package and parts[:len(folder_parts)] == folder_parts:
            parts = package.split(".") + parts[len(folder_parts):]
            break
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _survivor_blocks(report: str) -> list[str]:
    blocks = report.split("[job-id]")
    return ["[job-id]" + b for b in blocks if "TestOutcome.SURVIVED" in b]


def _counts(session: Path) -> dict[str, int]:
    """Mutants made, killed, survived, and other (not run yet: a stopped session; timed out; skipped)."""
    with sqlite3.connect(session) as db:
        made = db.execute("SELECT COUNT(*) FROM work_items").fetchone()[0]
        outcomes = dict(db.execute("SELECT test_outcome, COUNT(*) FROM work_results GROUP BY test_outcome").fetchall())
    killed, survived = outcomes.get("KILLED", 0), outcomes.get("SURVIVED", 0)
    return {"total": made, "killed": killed, "survived": survived, "other": made - killed - survived}


def _skip_annotations(session: Path, module: Path) -> int:
    """Mark the pending mutants inside type annotations skipped, and return how many there are in all.
    In a module that has ``from __future__ import annotations`` nothing evaluates them, so such a mutant
    (``str | None`` made ``str * None``: eleven per annotation) is equivalent by construction."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    tree = ast.parse(module.read_text())
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return 0
    spans = [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0))
             for a in _annotations(tree)]
    inside = []
    with use_db(str(session)) as db:
        for item in db.pending_work_items:
            if any(start <= tuple(m.start_pos) < end for m in item.mutations for start, end in spans):
                inside.append(item.job_id)
        if inside:
            db.set_multiple_results(inside, WorkResult(output="inside an annotation (never evaluated)",
                                                       worker_outcome=WorkerOutcome.SKIPPED))
        return sum(1 for item in db.completed_work_items
                   if item[1].output == "inside an annotation (never evaluated)")


def _annotations(tree: ast.AST) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            found += [a.annotation for a in every if a is not None and a.annotation is not None]
            if node.returns is not None:
                found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return found


if __name__ == "__main__":
    sys.exit(main())
