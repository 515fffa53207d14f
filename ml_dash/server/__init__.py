"""The ml-dash server (remote mode): ``create_app(config)`` and ``serve(...)``."""

from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
