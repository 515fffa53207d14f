"""Rows set aside (agent/upload/rejects.py): one record per range in ``.ml-dash-rejected/``, holding the
line itself up to its first 64 KiB (docs/remote.md), and the counts ``exp.stats()`` and ``ml-dash sync``
report, per server and prefix, whatever else lies in that folder."""

from __future__ import annotations

import json
from pathlib import Path

from ml_dash.agent.upload.pending import Void
from ml_dash.agent.upload.rejects import set_aside, set_aside_counts
from ml_dash.format.layout import REJECTED_DIR

SERVER = "http://127.0.0.1:1"


def _set_aside(run: Path, prefix: str, first: int, line: bytes, reason: str = "rejected") -> Path:
    data = run / "metrics/train/data.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    with open(data, "ab") as f:
        offset = f.tell()
        f.write(line + b"\n")
    void = Void(reason, "the server refused it", offset, len(line) + 1, 400)
    return set_aside(run, data, SERVER, prefix, "metrics/train", first, 1, void, "2026-12-07T00:00:00Z")


def test_a_record_holds_the_line_up_to_its_first_64_kib(tmp_path: Path) -> None:
    line = b'{"index": 0, "data": {"text": "' + b"x" * 100_000 + b'"}}'
    record = json.loads(_set_aside(tmp_path, "a/b/c", 0, line).read_text())
    assert record["content"] == line[:64 * 1024].decode()
    assert record["length"] == len(line) + 1 and (record["first"], record["count"]) == (0, 1)
    short = b'{"index": 1}'
    assert json.loads(_set_aside(tmp_path, "a/b/c", 1, short).read_text())["content"] == short.decode() + "\n"


def test_counts_skip_damaged_records_and_go_on_with_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / REJECTED_DIR
    _set_aside(tmp_path, "a/b/c", 5, b"{}")
    _set_aside(tmp_path, "a/b/c", 9, b"{}", reason="too_long")
    for name, text in (("0-damaged.json", "{not json"), ("1-list.json", "[1]"), ("2-no-count.json", '{"count": "1"}')):
        (folder / name).write_text(text)  # sorted before the records: a reader that stopped there counts nothing
    assert set_aside_counts(tmp_path) == {"metrics/train": {"rejected": 1, "too_long": 1}}


def test_counts_are_per_server_and_prefix(tmp_path: Path) -> None:
    for prefix, first in (("a/b/a", 0), ("a/b/c", 1), ("a/b/c", 2), ("a/b/z", 3)):
        _set_aside(tmp_path, prefix, first, b"{}")
    assert set_aside_counts(tmp_path, SERVER, "a/b/c") == {"metrics/train": {"rejected": 2}}
    assert set_aside_counts(tmp_path, SERVER, "a/b/a") == {"metrics/train": {"rejected": 1}}
    assert set_aside_counts(tmp_path, "http://127.0.0.1:0", "a/b/c") == set_aside_counts(tmp_path, "http://127.0.0.1:2", "a/b/c") == {}
    assert set_aside_counts(tmp_path) == {"metrics/train": {"rejected": 4}}


def test_rows_whose_file_cannot_be_read_are_still_set_aside_with_no_content(tmp_path: Path) -> None:
    void = Void("missing", "the stream's file is gone", 0, 10)
    path = set_aside(tmp_path, tmp_path / "metrics/gone/data.jsonl", SERVER, "a/b/c", "metrics/gone", 0, 3, void,
                     "2026-12-07T00:00:00Z")
    record = json.loads(path.read_text())
    assert (record["content"], record["count"], record["reason"]) == ("", 3, "missing")
    assert set_aside_counts(tmp_path, SERVER, "a/b/c") == {"metrics/gone": {"missing": 3}}
