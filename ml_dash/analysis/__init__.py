"""Analysis in pandas and Parquet: the run table and metric streams as DataFrames, from a local ``.dash``
root or a server, and ``ml-dash export``.

    import ml_dash
    runs = ml_dash.search_runs(".dash", project="alice/mnist", filter="lr < 0.01, train/loss < 0.5",
                               order_by="metrics.train/loss")
    loss = ml_dash.history("http://127.0.0.1:8080", "alice/mnist/run-1", "train")

pandas and pyarrow are an optional extra (``pip install "ml-dash[pandas]"``), imported by these
functions only: ``import ml_dash`` never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from ..format.conditions import ConditionError
    from ._deps import MissingExtraError
    from ._errors import NotFoundError
    from ._export import ExportSummary, export_parquet
    from ._history import history
    from ._search import search_runs

_HOMES = {"search_runs": "._search", "history": "._history", "export_parquet": "._export",
          "ExportSummary": "._export", "NotFoundError": "._errors", "MissingExtraError": "._deps",
          "ConditionError": "..format.conditions"}

__getattr__ = lazy_attributes(__name__, _HOMES)

__all__ = ["ConditionError", "ExportSummary", "MissingExtraError", "NotFoundError", "export_parquet", "history",
           "search_runs"]
