"""The ``ml-dash`` command: ``main`` parses the arguments and runs one subcommand (see main.py)."""

from .main import main

__all__ = ["main"]
