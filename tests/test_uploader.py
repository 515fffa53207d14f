"""The uploader's memory fast path: rows the agent just wrote are sent without reading them back."""

from __future__ import annotations

from pathlib import Path

from ml_dash import Experiment
from ml_dash.agent.uploader import MEMORY_ROWS, RunUploader, WrittenChunk


def _run(workdir: Path, rows: int) -> Experiment:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(rows):
            exp.metrics("train").log(step=i)
    return exp


def test_a_chunk_starting_at_the_cursor_is_taken_from_memory(workdir: Path) -> None:
    exp = _run(workdir, 10)
    uploader = RunUploader(exp.directory, exp.prefix, "http://127.0.0.1:9", {})
    size = (exp.directory / "metrics/train/data.jsonl").stat().st_size
    fields = [{"step": i, "_ts": 1.0} for i in range(10)]
    uploader.offer(WrittenChunk("metrics/train", 0, fields, "c", size))
    pending = uploader._read("metrics/train", exp.directory / "metrics/train/data.jsonl", 1000)
    assert pending.created_at == "c" and pending.rows is fields and pending.end_offset == size


def test_a_chunk_not_at_the_cursor_is_ignored_and_the_disk_is_read(workdir: Path) -> None:
    exp = _run(workdir, 10)
    uploader = RunUploader(exp.directory, exp.prefix, "http://127.0.0.1:9", {})
    uploader.offer(WrittenChunk("metrics/train", 5, [{"step": 5}], "c", 0))
    pending = uploader._read("metrics/train", exp.directory / "metrics/train/data.jsonl", 1000)
    assert pending.created_at is None and [r["index"] for r in pending.rows] == list(range(10))


def test_an_upload_that_falls_behind_drops_the_memory_copy(workdir: Path) -> None:
    exp = _run(workdir, 1)
    uploader = RunUploader(exp.directory, exp.prefix, "http://127.0.0.1:9", {})
    uploader.offer(WrittenChunk("metrics/train", 0, [{}] * (MEMORY_ROWS - 1), "c", 0))
    uploader.offer(WrittenChunk("metrics/train", MEMORY_ROWS - 1, [{}] * 2, "c", 0))
    assert uploader._written_rows == 0 and not uploader._written  # bounded: the disk has it all
