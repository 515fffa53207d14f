"""What the analysis functions raise besides the condition language's ``ConditionError`` (a ValueError)."""

from __future__ import annotations

from ..errors import MLDashError


class NotFoundError(MLDashError, LookupError):
    """No such run, or no such metric stream in the run (the message names what the run has)."""
