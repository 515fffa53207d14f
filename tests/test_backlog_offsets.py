"""``offset_of_index``: where the line of a row starts, found by bisection, for a rewind to any row."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_dash.agent.backlog import offset_of_index


def _lines(path: Path, count: int) -> list[int]:
    """A metric file of ``count`` rows; the offset of each line."""
    offsets, data = [], b""
    for i in range(count):
        offsets.append(len(data))
        data += b'{"index":%d,"data":{"v":%d},"createdAt":"2026-11-26T00:00:00.000000Z"}\n' % (i, i * 7)
    path.write_bytes(data)
    return offsets


@pytest.mark.parametrize("count", [1, 2, 3, 10, 257])
def test_the_offset_of_every_row_is_its_line_even_of_the_last_rows(tmp_path: Path, count: int) -> None:
    """A rewind to a row of the last line (a server that lost the run's only row) found the end of the file:
    that row was never sent again, and the next one went under its index."""
    path = tmp_path / "data.jsonl"
    offsets = _lines(path, count)
    assert [offset_of_index(path, "index", i) for i in range(count)] == offsets
    assert offset_of_index(path, "index", count) == path.stat().st_size  # past the rows: the end


def test_a_torn_last_line_is_not_a_row(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    offsets = _lines(path, 3)
    complete = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'{"index":3,"da')
    assert [offset_of_index(path, "index", i) for i in range(3)] == offsets
    assert offset_of_index(path, "index", 3) == offset_of_index(path, "index", 4) == complete
