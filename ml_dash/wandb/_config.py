"""``wandb.config``: the run's hyper-parameters, stored as the run's params (``exp.params``).

Attribute and item access (``config.lr``, ``config["lr"]``), ``update(d, allow_val_change=False)``,
``setdefaults(d)``, ``as_dict()``, ``keys()``/``items()``/``get()``. As in W&B, changing a value that
is already set raises unless ``allow_val_change=True`` is passed to ``update``; a ``dict``, an
``argparse.Namespace`` or any object with a ``__dict__`` (absl flags, a dataclass) is accepted.
Values are made JSON-friendly the way W&B makes them: tuples and sets become lists, paths and enums
their text or value, numpy scalars numbers, dataclasses dicts, and any other object its ``str()``.
Nested dicts are stored flat with dot keys (``{"opt": {"lr": 1}}`` -> ``opt.lr``) and come back nested.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

Store = Callable[[dict[str, Any]], None]


class Config:
    """The run's config; ``store`` receives each change (the run's params), or None when disabled."""

    def __init__(self, store: Store | None = None, initial: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", dict(initial or {}))
        object.__setattr__(self, "_store", store)

    # -- W&B's API ---------------------------------------------------------
    def update(self, values: Any, allow_val_change: bool = False) -> None:
        """Merge ``values`` (a dict, Namespace or object); raises on a changed value unless allowed."""
        changes = {_key(k): _friendly(v) for k, v in as_mapping("wandb.config.update()", values).items()}
        if not allow_val_change:
            for key, value in changes.items():
                if key in self._items and self._items[key] != value:
                    raise ValueError(
                        f"wandb.config: {key!r} is already {self._items[key]!r}; refusing to change it to {value!r} "
                        "(as W&B does). Pass allow_val_change=True to config.update() to change it")
        self._write(changes)

    def setdefaults(self, values: Any) -> dict[str, Any]:
        """Set the keys of ``values`` that are not set yet; returns the whole config."""
        mapping = as_mapping("wandb.config.setdefaults()", values)
        self._write({_key(k): _friendly(v) for k, v in mapping.items() if _key(k) not in self._items})
        return self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        """The config as a plain dict (a copy)."""
        return dict(self._items)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    # -- item and attribute access -----------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy/pickle probe dunders: never config keys
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"wandb.config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"

    def _write(self, changes: dict[str, Any]) -> None:
        if not changes:
            return
        if self._store is not None:
            self._store(changes)  # checked and written first: a refused value leaves the config as it was
        self._items.update(changes)


def as_mapping(call: str, values: Any) -> dict[str, Any]:
    """A dict of ``values``: a dict, an argparse Namespace, a dataclass, or an object's ``__dict__``."""
    if values is None:
        return {}
    if isinstance(values, Config):
        return values.as_dict()
    if isinstance(values, dict):
        return dict(values)
    if isinstance(values, argparse.Namespace):
        return vars(values)
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        return dataclasses.asdict(values)
    if isinstance(values, (str, os.PathLike)):
        raise NotImplementedError(f"{call} with a file name ({values!r}): ml-dash does not read config files; load "
                                  "it yourself (yaml.safe_load) and pass the dict")
    flags = getattr(values, "flag_values_dict", None)  # absl.flags.FLAGS
    if callable(flags):
        return dict(flags())
    if hasattr(values, "__dict__"):
        return {k: v for k, v in vars(values).items() if not k.startswith("_")}
    raise TypeError(f"{call} takes a dict, an argparse.Namespace or an object with attributes, "
                    f"not {type(values).__name__}")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"wandb.config keys must be str, got {key!r}")
    return key


def _friendly(value: Any) -> Any:
    """W&B's ``json_friendly_val``: the value as JSON can hold it."""
    if isinstance(value, enum.Enum):  # before int and str: IntEnum, StrEnum
        return _friendly(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _friendly(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_friendly(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_friendly(v) for v in sorted(value, key=repr)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _friendly(dataclasses.asdict(value))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.generic, numpy.ndarray)):
        return _friendly(value.tolist())
    return str(value)
