"""``wandb.summary`` / ``run.summary``: one value per key that describes the whole run.

As in W&B, each committed ``wandb.log`` row sets the summary of its keys to their latest values, and
an explicit ``summary["best"] = x`` (or ``summary.best = x``, ``summary.update({...})``) overrides a
key until it is logged again. Where it is stored:

* each explicit change is appended at once as a row of the metric stream :data:`SUMMARY_STREAM`
  (``summary``): written like every metric row, so it survives a crash of the process, and readers
  that take a stream's latest value (the UI, DataFrames) see it; ``del summary[k]`` appends ``None``;
* the whole summary (logged keys, explicit ones, ``_step``, ``_runtime``, ``_timestamp``) is saved as
  the file :data:`SUMMARY_FILE` (``files/wandb-summary.json``, the name W&B uses) when the run
  finishes, and read back from there when the run is resumed.

Values obey ``wandb.log``'s rule (ml_dash/wandb/_keys.py): scalars and str; nested dicts flatten to
``a.b`` keys; anything else raises ``NotImplementedError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from ._keys import flatten_row, metric_of

SUMMARY_STREAM = "summary"
SUMMARY_FILE = "wandb-summary.json"

Store = Callable[[dict[str, Any]], None]


class Summary(MutableMapping):
    """The run's summary; ``store`` receives each explicit change (None when the run is disabled)."""

    def __init__(self, store: Store | None = None, initial: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", dict(initial or {}))
        object.__setattr__(self, "_store", store)

    def update(self, *args: Any, **values: Any) -> None:
        """Set several keys at once (one stored row)."""
        merged: dict[str, Any] = dict(*args, **values)
        flat = flatten_row("wandb.summary.update()", merged)
        checked = {key: metric_of("wandb.summary", key, value) for key, value in flat.items()}
        for key in checked:
            _check_key(key)
        if checked and self._store is not None:
            self._store(checked)
        self._items.update(checked)

    def logged(self, row: dict[str, Any]) -> None:
        """A committed ``wandb.log`` row: its keys' latest values (already stored as metrics)."""
        self._items.update(row)

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain dict of plain values (tensors read now)."""
        return {key: plain(value) for key, value in self._items.items()}

    def __getitem__(self, key: str) -> Any:
        return plain(self._items[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self._items:
            raise KeyError(key)
        if self._store is not None:
            self._store({key: None})
        del self._items[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"wandb.summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Summary({self.as_dict()!r})"


def _check_key(key: str) -> None:
    if not key:
        raise ValueError("wandb.summary keys must not be empty")
    if key.startswith("_"):
        raise ValueError(f"wandb.summary key {key!r}: keys starting with '_' are the run's own (_step, _runtime)")


def plain(value: Any) -> Any:
    """A captured tensor's number (read now), anything else as it is."""
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (int, float, bool, str)):
        return item()
    return value
