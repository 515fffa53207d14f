"""Reading back what a framework integration wrote to a local run directory (the tests of
ml_dash/integrations): through the SDK's reading API for metric rows, and the run's documents."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ml_dash.format import layout
from ml_dash.metrics import read_metric_rows


def run_document(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / layout.EXPERIMENT).read_text())


def params_of(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / layout.PARAMS).read_text())["data"]


def rows_of(directory: Path, metric: str) -> list[dict[str, Any]]:
    """The fields of every row of ``metric``, in order, without the logging time."""
    path = layout.stream_path(Path(directory), layout.metric_stream(metric))
    rows = [row["data"] for row in read_metric_rows(path)] if path.exists() else []
    return [{key: value for key, value in row.items() if key != "_ts"} for row in rows]


def saved_files(directory: Path) -> dict[str, dict[str, Any]]:
    """The run's saved files by path (files/.files_metadata.json), each checked to be on disk."""
    listing = Path(directory) / layout.FILES_DIR / layout.FILES_METADATA
    entries = json.loads(listing.read_text())["files"] if listing.exists() else []
    for entry in entries:
        assert (Path(directory) / layout.FILES_DIR / entry["path"]).is_file(), entry
    return {entry["path"]: entry for entry in entries}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread meanwhile: a tiny model's ops on a loaded 2-core machine run 8 times slower
    with torch's default thread pool (12 s against 1.5 s for the same 8 steps), the threads waiting on
    each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
