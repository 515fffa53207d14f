"""The ml-dash server (remote mode): ``create_app(config)`` and ``serve(...)``.

``create_app`` and ``ServerConfig`` load on first use: an ingest worker process
imports ``ml_dash.server.ingest`` without the application and its routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import create_app
    from .config import ServerConfig

_HOMES = {"create_app": ".app", "ServerConfig": ".config"}


__getattr__ = lazy_attributes(__name__, _HOMES)


__all__ = ["ServerConfig", "create_app"]
