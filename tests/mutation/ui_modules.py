"""The mutation check of the UI's plain modules (cosmic-ray mutates Python only): hand-written mutants
of ml_dash/ui/static's pure functions and series logic, each of which tests/test_ui_modules.py must
kill. Usage: ``python tests/mutation/ui_modules.py``. Each mutant is applied in a fresh clone of HEAD
(the working tree is never touched); the line per mutant says KILLED or SURVIVED and the first case
that told. About 10 s a mutant on 2 cores: not part of CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: (file under ml_dash/ui/static, text, its mutant, what the mutant breaks)
MUTANTS = [
    ("chart.js", "(i && v < source[i - 1])", "(i && v <= source[i - 1])", "equal steps refused as x"),
    ("smoothing.js", "out.push(last / (1 - Math.pow(w, count)));", "out.push(last);", "EMA without debiasing"),
    ("smoothing.js", "if (recent.length > n)", "if (recent.length > n + 1)", "running mean over n+1 points"),
    ("conditions.js", "(<=|>=|!=|=|<|>)", "(<|>|<=|>=|!=|=)", "one-character operators tried first"),
    ("zoom.js", "return b > a ? [a, b] : null;", "return b >= a ? [a, b] : null;", "an empty zoom accepted"),
    ("zoom.js", "Math.ceil(span / 2)", "Math.floor(span / 2)", "pan by the floor of half"),
    ("zoom.js", "return [firsts[a], lasts[b] + 1];", "return [firsts[a], lasts[b]];", "a selection's last point cut"),
    ("series_points.js", "s.lo.push(num(f.min)); s.hi.push(num(f.max));",
     "s.lo.push(num(f.max)); s.hi.push(num(f.min));", "min and max swapped"),
    ("series.js", "if (this.generation === begun) { this.accept(s); this.catchUp(); }",
     "{ this.accept(s); this.catchUp(); }", "an older view's reply drawn"),
    ("series.js", "if (t && this.generation === begun) this.accept(t);", "if (t) this.accept(t);",
     "an extension begun before a new view drawn"),
    ("series.js", "if (this.held !== s) this.catchUp();", ";", "rows that came during an extension never read"),
    ("series.js", "this.held = null;  // nothing to extend", "// nothing to extend", "the old view's series extended"),
    ("series.js", "const since = held ? Math.max(start, Math.floor(s.firsts[held - 1] / s.width) * s.width) : start;",
     "const since = s.upto;", "an extension not from the last bucket"),
    ("series.js", "if (row.index >= end) break;", "", "rows past the range kept"),
    ("series.js", 'if (typeof out.next !== "number" || out.next <= from) break;', "break;", "a cut page's next ignored"),
    ("series.js", "Math.min(source.limits.max_buckets, Math.max(1, Math.floor(pixels)))", "Math.max(1, Math.floor(pixels))",
     "the server's bucket cap ignored"),
    ("series.js", "if (!this.view || !this.view.live) return;", "if (!this.view) return;", "a zoomed view follows the run"),
]


def main() -> int:
    survived = 0
    for name, text, mutant, what in MUTANTS:
        outcome, told = check(name, text, mutant)
        survived += outcome == "SURVIVED"
        print(f"{outcome:<8} {name}: {what}  {told[:140]}", flush=True)
    print(f"{len(MUTANTS) - survived}/{len(MUTANTS)} mutants killed")
    return 1 if survived else 0


def check(name: str, text: str, mutant: str) -> tuple[str, str]:
    clone = Path(tempfile.mkdtemp(prefix="ml-dash-mutation-ui-"))
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        path = clone / "ml_dash" / "ui" / "static" / name
        source = path.read_text()
        if source.count(text) != 1:
            return "STALE", f"the text to mutate is not once in {name}: update MUTANTS"
        path.write_text(source.replace(text, mutant))
        env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's ml_dash, in the test and its server
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                              "tests/test_ui_modules.py"], cwd=clone, env=env, capture_output=True, text=True,
                             timeout=300)
        told = next((line.strip() for line in run.stdout.splitlines() if line.startswith("E ")), "")
        return ("KILLED" if run.returncode else "SURVIVED"), told
    finally:
        shutil.rmtree(clone, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
