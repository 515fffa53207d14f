"""The run table's condition language, as the web UI reads it (``ml_dash/ui/static/conditions.js`` and
``runs.js``'s ``holds``): one home for the server's ``where=`` and ``ml_dash.search_runs(filter=)``.

Grammar (version 1)::

    conditions := condition ("," condition)*
    condition  := key op value            e.g.  lr < 0.01, train/loss <= 0.5, optimizer = adam
    op         := "<=" | ">=" | "!=" | "=" | "<" | ">"

``key`` is everything before the first of ``< > = !`` (trimmed); ``value`` the rest (trimmed, no quotes:
``name = my run`` compares with ``my run``). Commas always separate conditions.

A key names, in this order: the run's parameter of that name; else, when it holds ``/``, the latest
value of field ``f`` of metric stream ``m`` for ``m/f`` (split at the last ``/``). The column names of
``search_runs`` work too: ``params.lr``, ``metrics.train/loss``.

A condition holds when the run has a value for its key and the comparison is true: numbers compare as
numbers when the value reads as one (JavaScript's ``Number``: ``1e-3``, ``0x10``, ``Infinity``),
anything else compares as text (``true``/``false``/``null`` as JavaScript spells them). A run without
the key never matches, ``!=`` included. Where the UI shows "not a condition" beside the box, this
module raises :class:`ConditionError` naming each part it cannot read.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The UI's CONDITION, matched with fullmatch (Python's "$" would also match before a trailing newline).
_CONDITION = re.compile(r"([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*(.+)", re.DOTALL)
# JavaScript's Number() of a trimmed, non-empty string, less the forms nobody types in a filter box.
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_RADIX = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq, "!=": operator.ne}
#: A filter longer than this is refused (the server reads it from a query string).
MAX_FILTER_CHARS = 4096
MAX_CONDITIONS = 64
PARAM_COLUMN = "params."
METRIC_COLUMN = "metrics."


class ConditionError(ValueError):
    """A filter that is not in the condition language; the message names each part that is not."""


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    op: str
    value: str

    def metric(self) -> tuple[str, str] | None:
        """(stream, field) the key names when it is no parameter, or None when it cannot name one."""
        key = self.key.removeprefix(METRIC_COLUMN)
        stream, slash, field = key.rpartition("/")
        return (stream, field) if slash and stream and field else None


def parse_conditions(text: str | None) -> list[Condition]:
    """The conditions of ``text`` (None or blank: none); :class:`ConditionError` for anything else."""
    if text is None or not text.strip():
        return []
    if len(text) > MAX_FILTER_CHARS:
        raise ConditionError(f"a filter is at most {MAX_FILTER_CHARS} characters (this one has {len(text)})")
    out, unread = [], []
    for part in (p.strip() for p in text.split(",")):
        if not part:  # "a < 1," or "a < 1,, b > 2": an empty part is no condition and no error, as in the UI
            continue
        found = _CONDITION.fullmatch(part)
        if found is None:
            unread.append(part)
        else:
            out.append(Condition(found[1].strip(), found[2], found[3].strip()))
    if unread:
        shown = ", ".join(repr(p) for p in unread[:5])
        raise ConditionError(f"not a condition (key op value, op one of < <= > >= = !=, separated by commas): {shown}")
    if len(out) > MAX_CONDITIONS:
        raise ConditionError(f"a filter holds at most {MAX_CONDITIONS} conditions (this one has {len(out)})")
    return out


def metric_streams(conditions: list[Condition]) -> list[str]:
    """The metric streams the conditions may read a latest value of (the server asks for those)."""
    return list(dict.fromkeys(m[0] for c in conditions if (m := c.metric()) is not None))


def holds(condition: Condition, params: Mapping[str, Any], latest: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a run with ``params`` and ``latest`` (stream -> field -> latest value) meets ``condition``."""
    have = _value_of(condition, params, latest)
    if have is _MISSING:
        return False
    number = js_number(condition.value)
    if _is_number(have) and not math.isnan(number):
        return _OPERATORS[condition.op](have, number)
    return _OPERATORS[condition.op](js_string(have), condition.value)


def matches(conditions: list[Condition], params: Mapping[str, Any], latest: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(holds(c, params, latest) for c in conditions)


_MISSING = object()


def _value_of(condition: Condition, params: Mapping[str, Any], latest: Mapping[str, Mapping[str, Any]]) -> Any:
    key = condition.key
    if key in params:
        return params[key]
    if key.startswith(PARAM_COLUMN) and key[len(PARAM_COLUMN):] in params:
        return params[key[len(PARAM_COLUMN):]]
    metric = condition.metric()
    if metric is None:
        return _MISSING
    fields = latest.get(metric[0])
    return fields.get(metric[1], _MISSING) if isinstance(fields, Mapping) else _MISSING


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def js_number(text: str) -> float:
    """JavaScript's ``Number(text)`` for a trimmed, non-empty ``text`` (NaN where it reads no number)."""
    if _DECIMAL.fullmatch(text):
        return float(text)
    if _RADIX.fullmatch(text):
        return float(int(text, 0))
    return {"Infinity": math.inf, "+Infinity": math.inf, "-Infinity": -math.inf}.get(text, math.nan)


def js_string(value: Any) -> str:
    """``String(value)`` as the UI sees a value that arrived as JSON (objects as their JSON)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
