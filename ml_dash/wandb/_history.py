"""W&B's step and commit rules for ``wandb.log``, with no I/O: which rows are committed at which step.

As W&B's own handler (``handle_request_partial_history``) does it:

=================================  ==============================================================
call                               effect
=================================  ==============================================================
``log(d)``                         merge ``d`` into the pending row, commit it at ``step``, step + 1
``log(d, commit=False)``           merge ``d`` into the pending row only
``log(d, step=s)``, ``s == step``  merge ``d``; nothing is committed (unless ``commit=True``)
``log(d, step=s)``, ``s > step``   commit the pending row at ``step`` first, then ``step = s``, merge
``log(d, step=s)``, ``s < step``   ``ValueError``: W&B drops such a row with a warning; ml-dash
                                   refuses it at the call, so nothing is lost unseen
``log(d, ..., commit=True)``       after merging, commit at ``step``; ``step`` becomes that + 1
``finish()``                       commit the pending row
=================================  ==============================================================

A commit of an empty row writes nothing and leaves the step as it is (W&B does the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Commit = Callable[[int, dict[str, Any]], None]


class History:
    """The pending row and the step; ``commit(step, row)`` is called for each row that is complete."""

    def __init__(self, commit: Commit, start_step: int = 0) -> None:
        self.step = start_step
        self.last_committed: int | None = None  # the step of the last committed row
        self._pending: dict[str, Any] = {}
        self._commit = commit

    @property
    def pending(self) -> dict[str, Any]:
        """The row accumulated so far and not yet committed (a copy)."""
        return dict(self._pending)

    def log(self, row: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Apply one ``wandb.log(row, step=, commit=)`` (the row already checked)."""
        if step is not None:
            step = _check_step(step)
            if step < self.step:
                raise ValueError(
                    f"wandb.log(step={step}): the run is at step {self.step} and steps only grow (W&B would drop "
                    f"this row with a warning; ml-dash refuses it). Log without step= to use the next step, or with "
                    f"step >= {self.step}")
            if step > self.step:
                self.flush()
                self.step = step
        elif commit is None:
            commit = True
        self._pending.update(row)
        if commit:
            self.flush()

    def flush(self) -> None:
        """Commit the pending row at the current step (nothing when it is empty)."""
        if not self._pending:
            return
        row, self._pending = self._pending, {}
        self._commit(self.step, row)
        self.last_committed = self.step
        self.step += 1


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        index = getattr(step, "__index__", None)  # numpy integers, a one-element integer tensor
        if index is None or isinstance(step, bool):
            raise TypeError(f"wandb.log(step=...) must be an int, not {type(step).__name__}")
        step = index()
    if step < 0:
        raise ValueError(f"wandb.log(step={step}) must not be negative")
    return int(step)
