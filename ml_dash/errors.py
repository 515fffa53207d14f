"""Exceptions raised by ml-dash.

::

    MLDashError
    ├── ConfigurationError (also ValueError)   bad arguments or environment
    └── RunStateError (also RuntimeError)       used before start or after the run ended

Bad values and names raise plain ``ValueError`` / ``TypeError`` at the call,
naming the argument and the problem. Failures inside the agent (disk full, a
tensor that cannot be read) never raise in the training loop: they are counted
in ``exp.stats()`` with a reason and warned about once.
"""

from __future__ import annotations


class MLDashError(Exception):
    """Base class of every ml-dash exception."""


class ConfigurationError(MLDashError, ValueError):
    """An argument or environment variable is invalid or contradicts another."""


class RunStateError(MLDashError, RuntimeError):
    """The experiment's run is not in a state that allows the call."""
