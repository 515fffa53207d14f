"""Faults on the client side: a stalled disk, a full disk, torn files (fault matrix rows 7, 13, 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_dash.agent.rundir import whole_lines
from ml_dash.format.jsonlines import ReadReport, iter_records
from ml_dash.metrics import read_metric_rows

from .conftest import python_script, read_json, read_jsonl

pytestmark = pytest.mark.usefixtures("logger_impl")

def test_row15_a_stalled_disk_bounds_the_wait_then_counts_drops(tmp_path: Path) -> None:
    """The writer is stalled (a fake at the disk seam); log() waits at most max_block_s, then drops and counts."""
    result = python_script("""
        import asyncio, json, time
        import ml_dash.agent.rundir as rundir
        from ml_dash import Experiment

        stall = {"on": True}
        real_flush = rundir.RunWriter.flush
        async def stalled_flush(self, durable=False):
            while stall["on"]:
                await asyncio.sleep(0.01)
            await real_flush(self, durable)
        rundir.RunWriter.flush = stalled_flush

        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        for i in range(60000):  # all of them return while the disk stays stalled
            train.log(step=i)
        stall["on"] = False
        exp.run.complete()
        stats = exp.stats()["streams"]["metrics/train"]
        print(json.dumps({"stats": stats}))
    """, tmp_path, env={"ML_DASH_MAX_BUFFER_MB": "2", "ML_DASH_MAX_BLOCK_S": "0.3"})
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    stats = out["stats"]
    # the buffer filled once and the caller waited once (for at most max_block_s), then dropped without
    # waiting: 60,000 calls that each waited would take five hours, not the subprocess's timeout
    assert stats["waits"] == 1
    assert stats["accepted"] == 60000
    assert stats["dropped"]["buffer_full"] > 0
    assert stats["written"] + stats["dropped"]["buffer_full"] == 60000 and stats["pending"] == 0
    rows = read_jsonl(tmp_path / ".dash/o/p/r/metrics/train/data.jsonl")
    assert len(rows) == stats["written"]
    steps = [r["data"]["step"] for r in rows]
    assert steps == sorted(steps) and steps[0] == 0  # nothing reordered; drops are counted gaps
    assert "dropped" in result.stderr and "buffer_full" in result.stderr  # one warning


def test_row7_full_disk_drops_exactly_what_failed_and_recovers(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past 200 kB fail for real (EFBIG); raising it is 'space returns'."""
    result = python_script("""
        import json, resource, signal
        from ml_dash import Experiment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
        train = exp.metrics("train")
        for i in range(10000):
            train.log(step=i, payload="x" * 50)
            if i % 500 == 499:
                exp.flush()
        full = exp.stats()["streams"]["metrics/train"]
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        for i in range(10000, 10100):
            train.log(step=i, payload="y")
        exp.run.complete()
        print(json.dumps({"full": full, "end": exp.stats()["streams"]["metrics/train"]}))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    full, end = out["full"], out["end"]
    assert full["dropped"]["disk_error"] > 0
    assert full["written"] + full["dropped"]["disk_error"] + full["pending"] == full["accepted"] == 10000
    assert end["accepted"] == 10100 and end["written"] == full["written"] + 100 and end["pending"] == 0
    rows = read_jsonl(tmp_path / ".dash/o/p/r/metrics/train/data.jsonl")  # every line intact
    assert len(rows) == end["written"]
    assert [r["index"] for r in rows] == list(range(len(rows)))  # contiguous: failed chunks were cut back
    assert [r["data"]["step"] for r in rows[-100:]] == list(range(10000, 10100))


def test_row7_a_write_that_only_partly_fits_keeps_its_whole_lines_and_drops_only_the_rest(tmp_path: Path) -> None:
    """One write of 1,000 rows with room for about 30.5 of them: the 30 whole lines stay (written,
    uploadable, indices contiguous), the half line is cut off, and only the other 970 are dropped."""
    result = python_script("""
        import json, os, resource, signal
        from ml_dash import Experiment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        for i in range(100):
            train.log(step=i, payload="x" * 100)
        exp.flush()
        path = exp.directory / "metrics/train/data.jsonl"
        before = os.path.getsize(path)
        line = max(len(l) for l in path.read_bytes().splitlines(keepends=True))
        limit = before + int(30.5 * line)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        for i in range(100, 1100):  # one write: fewer rows than a chunk
            train.log(step=i, payload="x" * 100)
        exp.flush()
        full = exp.stats()["streams"]["metrics/train"]
        after = os.path.getsize(path)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
        for i in range(1100, 1110):
            train.log(step=i, payload="y")
        exp.run.complete()
        print(json.dumps({"full": full, "end": exp.stats()["streams"]["metrics/train"], "line": line,
                          "limit": limit, "after": after}))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    full, end = out["full"], out["end"]
    kept = full["written"] - 100
    assert 29 <= kept <= 31  # the lines that fitted, not none of them
    assert out["after"] <= out["limit"] < out["after"] + out["line"]  # not one more whole line would have fitted
    assert full["dropped"]["disk_error"] == 1000 - kept
    assert full["written"] + full["dropped"]["disk_error"] + full["pending"] == full["accepted"] == 1100
    assert end["accepted"] == 1110 and end["written"] == full["written"] + 10 and end["pending"] == 0
    rows = read_jsonl(tmp_path / ".dash/o/p/r/metrics/train/data.jsonl")  # every line whole: no torn line
    assert [r["index"] for r in rows] == list(range(len(rows))) and len(rows) == end["written"]
    assert [r["data"]["step"] for r in rows] == list(range(100 + kept)) + list(range(1100, 1110))


def test_row7_the_whole_lines_of_a_cut_write_are_counted_across_its_pieces() -> None:
    """A big append goes out as several pieces; a failure inside the second keeps the first whole."""
    pieces = [b'{"i":0}\n{"i":1}\n', b'{"i":2}\n{"i":3}\n']
    assert whole_lines(pieces, 0) == (0, 0)
    assert whole_lines(pieces, 11) == (1, 8)  # half of the second line
    assert whole_lines(pieces, 16) == (2, 16)  # exactly the first piece
    assert whole_lines(pieces, 27) == (3, 24)  # inside the second piece
    assert whole_lines(pieces, 32) == (4, 32)


def test_row13_reader_skips_and_reports_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"index":0,"data":{"v":1}}\n{"index":1,"data":{"v":2}}\n{"index":2,"da')
    report = ReadReport()
    rows = read_metric_rows(path, report=report)
    assert [r["index"] for r in rows] == [0, 1]
    assert report.torn_tail and report.skipped_lines == 1 and "torn last line" in report.problems[0]


def test_row13_reader_recovers_intact_records_around_a_corrupted_one(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"index":0}\n{"ind\xffex":1,,}\n[1,2]\n{"index":3}\n')
    report = ReadReport()
    assert [r["index"] for r in iter_records(path, report)] == [0, 3]
    assert report.skipped_lines == 2 and not report.torn_tail


def test_row13_writer_resumes_after_a_torn_tail_on_a_new_line(workdir: Path) -> None:
    from ml_dash import Experiment

    first = Experiment(prefix="a/b/c")
    with first.run:
        for i in range(3):
            first.metrics("train").log(step=i)
    data = first.directory / "metrics/train/data.jsonl"
    with open(data, "ab") as f:
        f.write(b'{"index":3,"data":{"st')  # a crash in the middle of a write
    second = Experiment(prefix="a/b/c")
    with second.run:
        second.metrics("train").log(step=3)
    report = ReadReport()
    rows = read_metric_rows(data, report=report)
    assert [(r["index"], r["data"]["step"]) for r in rows] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert report.skipped_lines == 1 and not report.torn_tail


END_ON_A_FULL_DISK = """
    import json, logging, resource, signal, sys
    from ml_dash import Experiment
    space_returns = {space_returns!r}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    class FreeSpaceOnTheWarning(logging.Handler):
        # someone frees space once the run says it cannot write experiment.json at its end
        def emit(self, record):
            if space_returns and "could not write" in record.getMessage():
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    logging.basicConfig(level=logging.WARNING)  # warnings to stderr
    logging.getLogger("ml_dash").addHandler(FreeSpaceOnTheWarning())
    exp = Experiment(prefix="a/b/c", close_timeout_s=3)
    exp.run.start()
    exp.metrics("train").log(step=0)
    exp.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # the disk fills: no file can grow
    print("complete", exp.run.complete(), exp.status.value, flush=True)
"""


@pytest.mark.parametrize("space_returns", [False, True])
def test_row7_the_end_of_a_run_on_a_full_disk_is_retried_then_reported_not_claimed(
        tmp_path: Path, space_returns: bool) -> None:
    """experiment.json with the end status cannot be written on a full disk. The close retries it until its
    deadline (space freed meanwhile lets it through); if it never can, complete() returns False and one
    warning says what is not on disk, instead of True over a run that `ml-dash ls` shows CRASHED."""
    result = python_script(END_ON_A_FULL_DISK.format(space_returns=space_returns), tmp_path)
    on_disk = read_json(tmp_path / ".dash/a/b/c/experiment.json")["status"]
    if space_returns:
        assert "complete True COMPLETED" in result.stdout, result.stdout + result.stderr
        assert on_disk == "COMPLETED"
    else:
        assert "complete False COMPLETED" in result.stdout, result.stdout + result.stderr
        assert on_disk == "RUNNING"
        assert "could not be written to disk before the close deadline" in result.stderr
        assert "experiment.json" in result.stderr and "shows it CRASHED" in result.stderr
        assert "retried on the next pass" not in result.stderr
