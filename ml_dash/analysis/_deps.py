"""pandas and pyarrow: optional (``pip install "ml-dash[pandas]"``), imported by the functions that use
them and nowhere else, so ``import ml_dash`` in a training job never loads them."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRA = 'pip install "ml-dash[pandas]"'


class MissingExtraError(ImportError):
    """pandas or pyarrow is not installed; the message names the extra that brings them."""


def _load(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs {name.split('.')[0]}, which is not installed: {EXTRA} "
                                f"(pandas and pyarrow). ({exc})") from None


def pandas(what: str) -> ModuleType:
    return _load("pandas", what)


def pyarrow(what: str) -> ModuleType:
    return _load("pyarrow", what)


def pyarrow_module(name: str, what: str) -> ModuleType:
    """A submodule of pyarrow (``pyarrow.json``, ``pyarrow.parquet``)."""
    pyarrow(what)
    return _load(name, what)
