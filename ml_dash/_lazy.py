"""Names a package re-exports, imported when first used (PEP 562), so that importing the package does
not import what it re-exports: the server imports ``ml_dash`` without the SDK, a worker pool
``ml_dash.agent`` without the engine's runtime."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each name to the module (relative to
    ``package``) that defines it; the value is imported on first use and kept in the package."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
