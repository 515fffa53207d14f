"""Console capture (ml_dash/capture/console.py, docs/capture.md): stdout and stderr kept with the run as
log lines, the terminal seeing exactly what it saw before, progress bars collapsed, the traceback of a
failing run kept whole, bounded, and switched off by ``console=False`` / ``ML_DASH_CONSOLE=0``."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment
from ml_dash.capture import console
from ml_dash.capture.lines import LineAssembler, final_state

from .conftest import python_script
from .waiting import wait_for


def _console_lines(run_dir: Path) -> list[dict[str, Any]]:
    """The run's log lines that capture wrote (those with a ``source``)."""
    path = run_dir / "logs.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in lines if "source" in (r.get("metadata") or {})]


def _texts(run_dir: Path, source: str | None = None) -> list[str]:
    return [r["message"] for r in _console_lines(run_dir) if source is None or r["metadata"]["source"] == source]


PRINTS = """
import logging, sys
# configured before the run: basicConfig's handler keeps the sys.stderr object it found now
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
from ml_dash import Experiment
exp = Experiment("a/b/console", system_metrics=False, provenance=False)
with exp.run:
    print("printed token-P1")
    print("two", "parts", sep="-", end="!\\n")
    logging.getLogger("train").warning("logged token-L1")
    sys.stderr.write("direct stderr token-E1\\n")
    for pct in range(0, 101, 10):
        sys.stderr.write(f"\\rprogress {pct:3d}%")
        sys.stderr.flush()
    sys.stderr.write("\\n")
    print("\\x1b[32mgreen token-G1\\x1b[0m")
    sys.stdout.write("unfinished token-U1")
"""


def test_printed_and_logged_lines_are_kept_and_the_terminal_sees_exactly_what_it_saw(
        workdir: Path, capture_on: None) -> None:
    captured = python_script(PRINTS, workdir)
    assert captured.returncode == 0, captured.stderr
    plain = python_script(PRINTS.replace("a/b/console", "a/b/plain"), workdir, env={"ML_DASH_CONSOLE": "0"})
    # stdout and stderr are pipes here (not terminals): byte for byte what they get without capture
    assert (captured.stdout, captured.stderr) == (plain.stdout, plain.stderr)
    run = workdir / ".dash/a/b/console"
    assert _texts(run, "stdout") == ["printed token-P1", "two-parts!", "green token-G1", "unfinished token-U1"]
    assert _texts(run, "stderr") == ["WARNING train logged token-L1", "direct stderr token-E1", "progress 100%"]
    assert {r["level"] for r in _console_lines(run)} == {"info"}
    assert _console_lines(workdir / ".dash/a/b/plain") == []  # ML_DASH_CONSOLE=0


FAILS = """
from ml_dash import Experiment
exp = Experiment("a/b/fails", system_metrics=False, provenance=False)

def inner():
    raise ValueError("inner token-T1")

with exp.run:
    print("before the error")
    try:
        inner()
    except ValueError as exc:
        raise RuntimeError("outer token-T2") from exc
"""


def test_the_traceback_of_a_failing_run_is_kept_whole(workdir: Path, capture_on: None) -> None:
    out = python_script(FAILS, workdir)
    assert out.returncode == 1
    run = workdir / ".dash/a/b/fails"
    kept = [r for r in _console_lines(run) if r["metadata"]["source"] == "traceback"]
    assert len(kept) == 1 and kept[0]["level"] == "error"
    # the same text Python printed, after the run had ended, with the cause and both frames
    printed = out.stderr[out.stderr.index("Traceback"):].rstrip("\n")
    assert kept[0]["message"] == printed
    assert "inner token-T1" in printed and "The above exception was the direct cause" in printed
    assert printed.endswith("RuntimeError: outer token-T2")
    assert json.loads((run / "experiment.json").read_text())["status"] == "FAILED"


def test_an_uncaught_exception_outside_a_with_block_is_kept_from_stderr(workdir: Path, capture_on: None) -> None:
    out = python_script("""
        from ml_dash import Experiment
        exp = Experiment("a/b/uncaught", system_metrics=False, provenance=False)
        exp.run.start()
        raise KeyError("uncaught token-X1")
    """, workdir)
    assert out.returncode == 1
    stderr_lines = _texts(workdir / ".dash/a/b/uncaught", "stderr")
    assert stderr_lines[0] == "Traceback (most recent call last):"
    assert stderr_lines[-1] == "KeyError: 'uncaught token-X1'"
    # kept once (from stderr, as Python printed it), and the run's reason is the exception, not "uncaught"
    assert _texts(workdir / ".dash/a/b/uncaught", "traceback") == []
    document = json.loads((workdir / ".dash/a/b/uncaught/experiment.json").read_text())
    assert (document["status"], document["status_reason"]) == ("FAILED", "KeyError: 'uncaught token-X1'")


def test_a_closed_stdout_raises_as_before_and_capture_goes_on(workdir: Path, capture_on: None) -> None:
    out = python_script("""
        import sys
        from ml_dash import Experiment
        exp = Experiment("a/b/closed", system_metrics=False, provenance=False)
        with exp.run:
            print("before token-C1")
            sys.stdout.close()
            try:
                print("after the close")
            except ValueError as exc:
                sys.stderr.write(f"print raised {type(exc).__name__}: {exc}\\n")
            sys.stderr.write("still token-C2\\n")
        sys.stderr.write(f"status {exp.status}\\n")
    """, workdir)
    assert out.returncode == 0, out.stderr
    assert "print raised ValueError: I/O operation on closed file" in out.stderr
    assert "status COMPLETED" in out.stderr
    run = workdir / ".dash/a/b/closed"
    assert _texts(run, "stdout") == ["before token-C1"]  # what the closed stream refused was never shown
    assert _texts(run, "stderr") == ["print raised ValueError: I/O operation on closed file.", "still token-C2"]


def test_a_redirect_takes_its_text_and_capture_resumes_when_it_ends(workdir: Path, capture_on: None) -> None:
    out = python_script("""
        import contextlib, io, sys
        from ml_dash import Experiment
        original = sys.stdout
        exp = Experiment("a/b/redirect", system_metrics=False, provenance=False)
        with exp.run:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                print("redirected token-R1")
            print("restored token-R2")
            sys.stdout = io.StringIO()  # a tool replacing stdout for good
            print("replaced token-R3")
        assert buffer.getvalue() == "redirected token-R1\\n"
        assert "write" not in vars(original), "the tee was left on the stream after the run"
    """, workdir)
    assert out.returncode == 0, out.stderr
    assert _texts(workdir / ".dash/a/b/redirect", "stdout") == ["restored token-R2"]


def test_a_forked_child_prints_through_and_neither_process_hangs(workdir: Path, capture_on: None) -> None:
    """A data-loader worker forked while the drainer holds its lock: the child's tee passes through (the
    parent's runs are not the child's); the parent keeps capturing."""
    out = python_script("""
        import os, sys, threading
        from ml_dash import Experiment
        exp = Experiment("a/b/fork", system_metrics=False, provenance=False)
        with exp.run:
            stop = threading.Event()
            def chatter():
                while not stop.is_set():
                    print("parent chatter")
            talker = threading.Thread(target=chatter)
            talker.start()
            for k in range(20):
                pid = os.fork()
                if pid == 0:
                    print(f"child {k} token-F1", flush=True)
                    os._exit(0)
                assert os.waitpid(pid, 0)[1] == 0
            stop.set()
            talker.join()
            print("parent token-F2")
    """, workdir, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(f"child {k} token-F1" in out.stdout for k in range(20))
    kept = _texts(workdir / ".dash/a/b/fork", "stdout")
    assert kept[-1] == "parent token-F2" and not any("token-F1" in line for line in kept)


def test_pytest_capsys_sees_what_it_saw_and_the_run_keeps_it(workdir: Path, capture_on: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    exp = Experiment("a/b/capsys", system_metrics=False, provenance=False)
    with exp.run:
        print("capsys token-S1")
        print("to stderr token-S2", file=sys.stderr)
    assert capsys.readouterr() == ("capsys token-S1\n", "to stderr token-S2\n")
    assert _texts(exp.directory) == ["capsys token-S1", "to stderr token-S2"]
    assert "write" not in vars(sys.stdout)


def test_lines_reach_the_run_while_it_runs_after_quiet_spells(workdir: Path, capture_on: None) -> None:
    """The drainer sleeps while nothing is written and wakes on the next write (no line waits for the end)."""
    exp = Experiment("a/b/live", system_metrics=False, provenance=False)
    with exp.run:
        for k in range(3):
            writers = [threading.Thread(target=lambda k=k, t=t: sys.stdout.write(f"burst {k} from {t}\n"))
                       for t in range(4)]
            for w in writers:
                w.start()
            for w in writers:
                w.join()
            wait_for(lambda k=k: len([r for r in exp.logs.read() if r["message"].startswith(f"burst {k} ")]) == 4,
                     f"burst {k} in the run's log while it runs")
            wait_for(lambda: not console.hub().queue, "the queue drained")


def test_lines_written_from_other_threads_are_kept(workdir: Path, capture_on: None) -> None:
    exp = Experiment("a/b/threads", system_metrics=False, provenance=False)
    with exp.run:
        # one write a line: print() writes the text and the newline apart, and threads interleave them on
        # the terminal as they do here
        threads = [threading.Thread(target=lambda k=k: sys.stdout.write(f"thread {k}\n")) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(_texts(exp.directory)) == sorted(f"thread {k}" for k in range(8))


def test_a_real_tqdm_bar_is_one_line_in_its_final_state(workdir: Path, capture_on: None) -> None:
    tqdm = pytest.importorskip("tqdm")
    exp = Experiment("a/b/tqdm", system_metrics=False, provenance=False)
    with exp.run:
        for _ in tqdm.tqdm(range(200), desc="epoch", mininterval=0, file=sys.stderr):
            pass
    lines = _texts(exp.directory, "stderr")
    assert len(lines) == 1, lines
    assert lines[0].startswith("epoch: 100%") and "200/200" in lines[0]


@pytest.mark.parametrize("switch", ["keyword", "environment"])
def test_console_off_captures_nothing_and_leaves_the_streams_alone(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    if switch == "environment":
        monkeypatch.setenv("ML_DASH_CONSOLE", "0")
    exp = Experiment("a/b/off", system_metrics=False, provenance=False,
                     **({"console": False} if switch == "keyword" else {}))
    with exp.run:
        assert "write" not in vars(sys.stdout)
        print("not kept")
    assert _console_lines(exp.directory) == []
    assert "capture" not in exp.stats()


def test_a_bad_console_switch_is_a_clear_error(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_dash import ConfigurationError

    monkeypatch.setenv("ML_DASH_CONSOLE", "maybe")
    with pytest.raises(ConfigurationError, match="ML_DASH_CONSOLE='maybe'"):
        Experiment("a/b/bad")
    with pytest.raises(TypeError, match="console= must be True or False"):
        Experiment("a/b/bad", console="yes")  # type: ignore[arg-type]


def test_a_run_keeps_at_most_its_limit_and_counts_and_says_what_it_dropped(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "RUN_LIMIT_BYTES", 1000)
    exp = Experiment("a/b/limit", system_metrics=False, provenance=False)
    with exp.run:
        for i in range(100):
            print(f"line {i:03d} " + "x" * 90)  # 99 bytes a line: 10 fit in 1,000
    texts = _texts(exp.directory)
    assert len(texts) == 11 and texts[9].startswith("line 009")
    assert texts[10] == "ml-dash: the console of this run passed 1,000 bytes; 90 later lines (8,910 bytes) are not kept"
    assert exp.stats()["capture"]["console"]["dropped"] == {"console_limit": 90}


def test_writes_past_the_queue_bound_are_dropped_and_counted_never_held(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "MAX_QUEUED_CHARS", 1000)
    monkeypatch.setattr(console, "DRAIN_INTERVAL_S", 3600.0)  # a drainer that never comes in time
    exp = Experiment("a/b/backlog", system_metrics=False, provenance=False)
    with exp.run:
        hub = console.hub()
        for i in range(100):
            sys.stdout.write(f"{i:03d}" + "y" * 96 + "\n")  # one write of 100 characters
        assert len(hub.queue) == 10  # 1,000 characters wait; the other 90 writes were never queued
    texts = _texts(exp.directory)
    assert texts[:10] == [f"{i:03d}" + "y" * 96 for i in range(10)]
    assert texts[10].startswith("ml-dash: 90 writes to the console (9,000 characters) came faster than")
    assert exp.stats()["capture"]["console"]["dropped"] == {"console_backlog": 90}


def test_a_console_capture_failure_is_one_warning_and_the_run_goes_on(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(self: Any, text: str) -> list[str]:
        raise RuntimeError("assembler broke")

    monkeypatch.setattr(LineAssembler, "feed", broken)
    exp = Experiment("a/b/broken", system_metrics=False, provenance=False)
    with exp.run:
        for i in range(3):
            print(f"line {i}")
        exp.log("structured still works")
    assert exp.status.value == "COMPLETED"
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("ml_dash")]
    assert len(warnings) == 1 and "console capture" in warnings[0].getMessage()
    assert [r["message"] for r in exp.logs.read()] == ["structured still works"]


@pytest.mark.parametrize("writes, lines, unfinished", [
    (["a\n", "b", "c\n"], ["a", "bc"], None),
    (["\r 10%", "\r 50%", "\r100%\n"], ["100%"], None),
    (["\r 10%|#", "\r 20%|##"], [], " 20%|##"),
    (["done\r\n"], ["done"], None),  # a Windows line end is no redraw
    (["x\r   \r\n"], ["x"], None),  # tqdm(leave=False) blanks its line: the last text shown stays
    (["\x1b[1mbold\x1b[0m\n", "\x1b]0;title\x07t\n"], ["bold", "t"], None),
    (["", "\n", "\n"], ["", ""], None),
])
def test_writes_become_lines_as_a_terminal_shows_them(writes: list[str], lines: list[str],
                                                     unfinished: str | None) -> None:
    assembler = LineAssembler()
    got: list[str] = []
    for text in writes:
        got += assembler.feed(text)
    assert (got, assembler.unfinished()) == (lines, unfinished)


def test_a_line_redrawn_for_ever_holds_one_redraw_and_an_endless_line_is_cut() -> None:
    assembler = LineAssembler(max_line_chars=100)
    for i in range(10_000):
        assert assembler.feed(f"\rstep {i}") == []
    assert len(assembler._partial) <= len("\rstep 9999") and assembler.unfinished() == "step 9999"
    assert LineAssembler(max_line_chars=100).feed("z" * 250) == ["z" * 100, "z" * 100]
    assert final_state("a\rb\rc") == "c"


def test_print_to_a_stream_without_a_dict_is_left_alone(workdir: Path, capture_on: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    class Slotted:
        __slots__ = ("seen",)

        def __init__(self) -> None:
            self.seen: list[str] = []

        def write(self, text: str) -> int:
            self.seen.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    stream = Slotted()
    monkeypatch.setattr(sys, "stdout", stream)
    exp = Experiment("a/b/slotted", system_metrics=False, provenance=False)
    with exp.run:
        print("to a slotted stream")
        with contextlib.redirect_stderr(io.StringIO()):
            pass
    assert stream.seen == ["to a slotted stream", "\n"]
    assert _texts(exp.directory, "stdout") == []
