"""Each numeric field of a metric, summarised for ``ml-dash show``: its last value and its best, each at its step.

"Best" follows one documented rule (docs/cli.md): the minimum for a field whose name says lower is
better (``loss``, ``error``/``err``, ``perplexity``/``ppl``, ``mse``, ``mae``, ``rmse``, ``wer``, ``cer``,
``regret``), the maximum for any other (accuracy, reward, F1...). Both extremes are kept, so the line
shows the other one too, and a field the rule reads wrongly (``lr``) is still read right by a person.

A value's step is the row's ``step`` (or ``global_step``, ``epoch``), else its index; those step fields
and the reserved ``_ts`` are not summarised themselves. NaN is never a minimum or maximum, but can be the
last value (a diverged run says so).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

#: Fields that count steps, in the order a row's step is taken from; never summarised as metrics.
STEP_FIELDS = ("step", "global_step", "_step", "epoch")  # _step: ml_dash.wandb's (W&B's) step
_LOWER_IS_BETTER = re.compile(r"loss|err|perplexity|ppl|mse|mae|wer|cer|regret", re.IGNORECASE)


def lower_is_better(field: str) -> bool:
    """Whether the best value of ``field`` is its minimum (the rule in the module docstring)."""
    return bool(_LOWER_IS_BETTER.search(field))


@dataclass(slots=True)
class FieldSummary:
    """The last, minimum and maximum value of one field, each with the step it was logged at."""

    last: float
    last_at: Any
    low: float = math.nan
    low_at: Any = None
    high: float = math.nan
    high_at: Any = None

    def see(self, value: float, at: Any) -> None:
        self.last, self.last_at = value, at
        if math.isnan(value):
            return
        if self.low_at is None or value < self.low:
            self.low, self.low_at = value, at
        if self.high_at is None or value > self.high:
            self.high, self.high_at = value, at

    def best(self, field: str) -> tuple[str, float, Any]:
        """("min" or "max", the value, its step) by the rule above."""
        return ("min", self.low, self.low_at) if lower_is_better(field) else ("max", self.high, self.high_at)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class MetricSummary:
    """Folds a metric's rows (as stored: ``{"index", "data", "nonFinite"?}``) into a :class:`FieldSummary` per field."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldSummary] = {}
        self.step_field: str | None = None

    def see(self, record: dict[str, Any]) -> None:
        data = record.get("data")
        if not isinstance(data, dict):
            return
        non_finite = record.get("nonFinite") or ()
        at = record.get("index")
        for name in STEP_FIELDS:
            if _number(data.get(name)) is not None:
                at, self.step_field = data[name], self.step_field or name
                break
        for name, raw in data.items():
            if name == "_ts" or name in STEP_FIELDS:
                continue
            value = float(raw) if name in non_finite and isinstance(raw, str) else _number(raw)
            if value is None:
                continue
            summary = self.fields.get(name)
            if summary is None:
                summary = self.fields[name] = FieldSummary(value, at)
            summary.see(value, at)


def format_value(value: float) -> str:
    """A number as a person reads it: up to 6 significant digits, no float noise (0.1, not 0.1000000000000001)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.6g}"


def describe(field: str, summary: FieldSummary, step_field: str | None, ranked: bool = True) -> str:
    """One line of ``ml-dash show`` for a field: ``loss  last 0.12 at step 99  best (min) 0.1 at step 87  max 2.3 at step 0``;
    unless ``ranked``, its range instead of a best (``mem_used_mib  last 1729 at index 9  min 1702 ...  max 1751 ...``:
    a machine's readings have no better end)."""
    unit = step_field or "index"
    best_kind, best, best_at = summary.best(field)
    line = f"{field}  last {format_value(summary.last)} at {unit} {summary.last_at}"
    if best_at is None:
        return line + "  (no number that is not NaN)"
    if not ranked:
        return (f"{line}  min {format_value(summary.low)} at {unit} {summary.low_at}"
                f"  max {format_value(summary.high)} at {unit} {summary.high_at}")
    other_kind, other, other_at = ("max", summary.high, summary.high_at) if best_kind == "min" else (
        "min", summary.low, summary.low_at)
    return (f"{line}  best ({best_kind}) {format_value(best)} at {unit} {best_at}"
            f"  {other_kind} {format_value(other)} at {unit} {other_at}")
