"""The mutation check: cosmic-ray over the modules that carry guarantees, each against its tests.

Usage: ``python tests/mutation/run.py [NAME ...]`` (names from modules.toml; all by default). Each
module is mutated in a fresh clone of HEAD (the working tree is never touched) and its tests run
once per mutant; the table says how many mutants each module had, how many the tests killed, and
where the survivors' diffs are. Slow (minutes per module on 2 cores): not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PER_MUTANT_TIMEOUT_S = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="modules.toml entries (default: all)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ml-dash-mutation",
                        help="where the sessions and survivors' diffs go (default: %(default)s)")
    args = parser.parse_args()
    table = tomllib.loads((HERE / "modules.toml").read_text())
    unknown = set(args.names) - set(table)
    if unknown:
        parser.error(f"unknown module entries {sorted(unknown)}; known: {sorted(table)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [check(name, table[name], args.out) for name in (args.names or list(table))]
    print(f"\n{'module':<16} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6}  survivors")
    for name, counts, survivors in rows:
        print(f"{name:<16} {counts['total']:>8} {counts['killed']:>7} {counts['survived']:>9} {counts['other']:>6}"
              f"  {survivors}")
    return 0


def check(name: str, entry: dict[str, str], out: Path) -> tuple[str, dict[str, int], Path]:
    clone = Path(tempfile.mkdtemp(prefix=f"ml-dash-mutation-{name}-"))
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        _copy_extension(clone)
        config = clone / "cosmic-ray.toml"
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(entry['module'])}\n"
            f"timeout = {PER_MUTANT_TIMEOUT_S}.0\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(_test_command(entry['tests']))}\n"
            "[cosmic-ray.distributor]\nname = \"local\"\n")
        session = out / f"{name}.sqlite"
        session.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's ml_dash, in the tests and their subprocesses
        for step in (["init", str(config), str(session)], ["exec", str(config), str(session)]):
            subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *step], cwd=clone, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        report = subprocess.run(["cr-report", "--show-diff", str(session)], capture_output=True, text=True,
                                check=True).stdout
        survivors = out / f"{name}-survivors.txt"
        survivors.write_text("\n".join(_survivor_blocks(report)))
        return name, _counts(report), survivors
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def _test_command(tests: str) -> str:
    """pytest over the entry's tests: stop at the first failure, in file order, no cache in the clone."""
    return f"{sys.executable} -m pytest -x -q -p no:randomly -p no:cacheprovider {tests}"


def _copy_extension(clone: Path) -> None:
    """The C hot path as built here (the clone has only its source), so native tests run, not skip."""
    import ml_dash

    for built in Path(ml_dash.__file__).parent.glob("_fastlog*.so"):
        shutil.copy2(built, clone / "ml_dash" / built.name)


def _survivor_blocks(report: str) -> list[str]:
    blocks = report.split("[job-id]")
    return ["[job-id]" + b for b in blocks if "TestOutcome.SURVIVED" in b]


def _counts(report: str) -> dict[str, int]:
    killed = report.count("TestOutcome.KILLED")
    survived = report.count("TestOutcome.SURVIVED")
    total = report.count("[job-id]")
    return {"total": total, "killed": killed, "survived": survived, "other": total - killed - survived}


if __name__ == "__main__":
    sys.exit(main())
