"""Exceptions raised by ml-dash.

::

    MLDashError
    ├── ConfigurationError (also ValueError)   bad arguments or environment
    └── RunStateError (also RuntimeError)       used before start or after the run ended
        ├── RunLockedError                      another writer holds the run directory
        └── RunConflictError                    the prefix already holds another run (or, with
                                                resume="must", holds none)

Bad values and names raise plain ``ValueError`` / ``TypeError`` at the call,
naming the argument and the problem (the value domain is in
``ml_dash/agent/values.py``). Failures inside the agent (disk full, a tensor
that cannot be read) never raise in the training loop: they are counted in
``exp.stats()`` with a reason and warned about once.
"""

from __future__ import annotations


class MLDashError(Exception):
    """Base class of every ml-dash exception."""


class ConfigurationError(MLDashError, ValueError):
    """An argument or environment variable is invalid or contradicts another."""


class RunStateError(MLDashError, RuntimeError):
    """The experiment's run is not in a state that allows the call."""


class RunLockedError(RunStateError):
    """The run directory is being written by another process, or by another Experiment of this one.

    ``holder`` is what the holder recorded: ``pid``, ``hostname``, ``since`` (ISO time), ``prefix``.
    """

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class RunConflictError(RunStateError):
    """The run asked for and the run that exists disagree: the prefix holds another run (from another
    directory, on the server), or ``resume="never"`` found one, or ``resume="must"`` found none."""
