"""Runs a Markdown page's walk-through as a reader would: its shell and Python blocks, in order, in one
fresh directory (tests/test_walkthroughs.py runs README.md's, and every docs page that opts in).

The rules a page is written to:

* ```` ```bash ```` (or ``sh``, ``shell``) blocks run line by line in bash (a line ending in ``\\`` goes
  on); what a line exports, and where it ``cd``s, carry over to the next line and block.
* ```` ```python ```` blocks run as a script in a fresh interpreter, in the same directory and environment.
* A block right after ``<!-- walkthrough: skip (why) -->`` is not run (an install from the network, the
  test suite itself).
* A ```` ```text ```` block shows output: each of its lines must be in the output of the last block run
  before it.
* ``ml-dash server ...`` and ``ml-dash ui ...`` run until the walk-through ends, as a reader leaves them
  in a terminal: started in the background, waited for until they print their URL, stopped at the end.
  Each gets a free port: the page's 8080 (the server's) and 8090 (the UI's) are replaced everywhere.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .waiting import wait_for

SKIP = re.compile(r"^<!--\s*walkthrough:\s*skip\b")
OPT_IN = "<!-- walkthrough -->"
SHELLS = ("bash", "sh", "shell")
SERVICES = ("server", "ui")
DEFAULT_PORTS = {"server": "8080", "ui": "8090"}


@dataclass
class Block:
    """A fenced block of a page: its language, its text and the line it starts on."""

    language: str
    text: str
    line: int
    skipped: bool = False


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order, each marked skipped when a skip comment precedes it."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    skip_next, i = False, 0
    while i < len(lines):
        line = lines[i].strip()
        if SKIP.match(line):
            skip_next = True
        elif line.startswith("```"):
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            found.append(Block(line[3:].strip().lower(), "\n".join(body) + "\n", start, skip_next))
            skip_next = False
        i += 1
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A server or UI the walk-through started, and the lines it printed while starting."""

    kind: str
    proc: subprocess.Popen
    banner: list[str] = field(default_factory=list)


class Walkthrough:
    """One reader's session: a directory, an environment, the services started, the outputs seen."""

    def __init__(self, directory: Path, scripts: Path, env: dict[str, str]) -> None:
        self.cwd, self.scripts = directory, scripts
        self.env = dict(env)
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        self.ports = {kind: str(_free_port()) for kind in SERVICES}
        self.services: list[Service] = []
        self.outputs: list[tuple[Block, str]] = []

    def localise(self, text: str) -> str:
        """The page's default ports replaced by this session's free ones."""
        for kind, default in DEFAULT_PORTS.items():
            text = re.sub(rf"\b{default}\b", self.ports[kind], text)
        return text

    def run(self, page: Path) -> None:
        """Every block of ``page`` in order; AssertionError naming the block that failed."""
        last = ""
        for block in blocks(page):
            where = f"{page.name}:{block.line}"
            if block.skipped:
                continue
            if block.language in SHELLS:
                last = "".join(self._shell_line(line, where) for line in _commands(self.localise(block.text)))
            elif block.language == "python":
                last = self._python(self.localise(block.text), where)
            elif block.language == "text" and last:
                for line in filter(None, (ln.strip() for ln in self.localise(block.text).splitlines())):
                    assert line in last, f"{where}: the page shows {line!r}, but the block before printed:\n{last}"
                continue
            else:
                continue
            self.outputs.append((block, last))

    def _python(self, text: str, where: str) -> str:
        script = self.scripts / f"block-{len(self.outputs)}.py"
        script.write_text(text)
        out = subprocess.run([sys.executable, str(script)], cwd=self.cwd, env=self.env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, f"{where}: the Python block failed ({out.returncode}):\n{out.stderr}"
        return out.stdout + out.stderr

    def _shell_line(self, line: str, where: str) -> str:
        words = shlex.split(line, comments=True)
        if words[:1] == ["ml-dash"] and words[1:2] and words[1] in SERVICES:
            return self._start_service(words, where)
        state = self.scripts / "state"
        script = (f"set -euo pipefail\n{line}\nstatus=$?\npwd > {shlex.quote(str(state))}.cwd\n"
                  f"env -0 > {shlex.quote(str(state))}.env\nexit $status\n")
        out = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, f"{where}: `{line}` failed ({out.returncode}):\n{out.stdout}{out.stderr}"
        self.cwd = Path(Path(f"{state}.cwd").read_text().strip())
        pairs = (item.split("=", 1) for item in Path(f"{state}.env").read_text().split("\0") if "=" in item)
        self.env = {name: value for name, value in pairs if not name.startswith("BASH_FUNC_")}
        return out.stdout + out.stderr

    def _start_service(self, words: list[str], where: str) -> str:
        kind = words[1]
        if "--port" not in words:
            words = [*words, "--port", self.ports[kind]]
        log = self.scripts / f"{kind}-{len(self.services)}.log"
        with open(log, "wb") as out:  # a file, not a pipe: a service that logs on never blocks on a full pipe
            proc = subprocess.Popen(words, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        service = Service(kind, proc)
        self.services.append(service)
        wanted = "open http" if kind == "ui" else "listening on"

        def started() -> bool:
            service.banner = log.read_text(errors="replace").splitlines(keepends=True)
            return proc.poll() is not None or any(wanted in line for line in service.banner)

        wait_for(started, f"{where}: `{' '.join(words)}` printing its URL", log.read_text)
        assert proc.poll() is None, f"{where}: `{' '.join(words)}` exited {proc.poll()}:\n{log.read_text()}"
        return "".join(service.banner)

    def stop(self) -> None:
        """Stop every service started (SIGTERM, then SIGKILL), by its process group."""
        for service in self.services:
            if service.proc.poll() is None:
                os.killpg(service.proc.pid, signal.SIGTERM)
                try:
                    service.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(service.proc.pid, signal.SIGKILL)
                    service.proc.wait(timeout=20)


def _commands(text: str) -> list[str]:
    """The commands of a shell block: blank and comment-only lines dropped, ``\\`` continuations joined."""
    commands: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            commands.append(line.strip())
    return commands
