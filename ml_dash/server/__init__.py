"""The ml-dash server (remote mode): ``create_app(config)`` and ``serve(...)``.

``create_app`` and ``ServerConfig`` load on first use: an ingest worker process
imports ``ml_dash.server.ingest`` without the application and its routes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import ServerConfig

_HOMES = {"create_app": ".app", "ServerConfig": ".config"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ServerConfig", "create_app"]
