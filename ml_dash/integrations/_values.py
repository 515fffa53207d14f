"""What a framework hands us, made into what ml-dash records: parameters and metric rows.

Frameworks give configuration objects (``TrainingArguments``, a model config, an ``argparse.Namespace``,
an optimizer's ``get_config()``) holding anything: enums, paths, dtypes, devices, callables, nested
configs. Parameters keep the JSON values ml-dash accepts (ml_dash/format/values.py) as they are, turn
what has an obvious text form into that text (*stringified*), and leave out what cannot be a parameter
(*skipped*: a name with an empty segment or too long, a text past :data:`MAX_PARAM_CHARS`); both are
counted by reason with the first names, so nothing goes missing unnoticed.

Metric rows keep numbers (int, float, bool, None, numpy scalars, one-element tensors) and short
strings; a list, a dict or an image in a framework's ``logs`` is skipped and counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import numbers
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..format.values import INT_MAX, INT_MIN, MAX_DEPTH, MAX_NAME_CHARS

#: A parameter's text longer than this is skipped (a prompt template, a serialised config): parameters
#: are for comparing runs, and all of them together must fit the 1 MiB document.
MAX_PARAM_CHARS = 10_000
#: A metric field's text longer than this is skipped (metric rows are scalars; text belongs in the logs).
MAX_METRIC_TEXT_CHARS = 256
_EXAMPLES = 5  # names kept per reason, for the warning
#: Names of parameters whose text is a credential (``hub_token``, ``api_key``, ``db_password``): their
#: value is replaced by :data:`REDACTED` (parameters are shown in the UI and shared with the project).
_SECRET_NAME = re.compile(r"(^|[_.-])(token|api_?key|password|passwd|secret|credentials?)$", re.IGNORECASE)
REDACTED = "<redacted>"
_MASKED = re.compile(r"|<[A-Za-z_]+>")  # empty, or masked already (TrainingArguments writes "<HUB_TOKEN>")


class Tally:
    """Values not recorded as given, by reason (``stringified``, ``skipped: ...``), with a few names each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] += 1
        names = self.examples.setdefault(reason, [])
        if len(names) < _EXAMPLES:
            names.append(name)

    def merge(self, other: Tally) -> None:
        for reason, count in other.counts.items():
            self.counts[reason] += count
            names = self.examples.setdefault(reason, [])
            names.extend(other.examples.get(reason, [])[: _EXAMPLES - len(names)])

    def summary(self) -> str:
        """``"3 stringified (a, b, c); 1 skipped: too long (prompt)"``, or "" when nothing was changed."""
        return "; ".join(f"{count} {reason} ({', '.join(self.examples.get(reason, []))})"
                         for reason, count in sorted(self.counts.items()))

    def __bool__(self) -> bool:
        return bool(self.counts)


def as_mapping(obj: Any) -> Mapping[str, Any] | None:
    """The fields of a configuration object, or None when it has none we know how to read."""
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, type):
        return None
    if isinstance(obj, argparse.Namespace):
        return vars(obj)
    # An object's own to_dict() first: TrainingArguments' masks its tokens, which its dataclass fields hold
    to_dict = getattr(obj, "to_dict", None)  # Hugging Face configs, and many others
    if callable(to_dict):
        try:
            found = to_dict()
        except Exception:  # noqa: BLE001 - a to_dict() that needs arguments or fails: try the dataclass fields
            found = None
        if isinstance(found, Mapping):
            return found
    if dataclasses.is_dataclass(obj):
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    return None


def param_values(values: Any, parent: str = "", tally: Tally | None = None) -> tuple[dict[str, Any], Tally]:
    """Flat dot keys (``{"model": {"depth": 8}}`` -> ``{"model.depth": 8}``) to JSON values ml-dash accepts."""
    tally = tally if tally is not None else Tally()
    flat: dict[str, Any] = {}
    mapping = as_mapping(values)
    if mapping is None:
        raise TypeError(f"parameters must be a mapping or a configuration object, not {type(values).__name__}")
    pending: list[tuple[str, Mapping[str, Any], int]] = [(parent, mapping, 0)]
    while pending:
        prefix, node, depth = pending.pop()
        for raw_key, raw_value in node.items():
            key = str(raw_key)
            full = f"{prefix}.{key}" if prefix else key
            if not key or not all(key.split(".")) or len(key) > MAX_NAME_CHARS:
                tally.add("skipped: not a parameter name", full[:80])
                continue
            nested = as_mapping(raw_value) if not _is_scalar(raw_value) else None
            if nested is not None and nested and depth + 1 < MAX_DEPTH:
                pending.append((full, nested, depth + 1))
                continue
            if _SECRET_NAME.search(key) and isinstance(raw_value, str) and not _MASKED.fullmatch(raw_value):
                tally.add("redacted", full)  # a credential in a config: never stored, never shown
                flat[full] = REDACTED
                continue
            value = _json_value(full, raw_value, tally, MAX_DEPTH - depth)
            if value is not _SKIP:
                flat[full] = value
    return flat, tally


_SKIP = object()


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float, enum.Enum))


def _json_value(name: str, value: Any, tally: Tally, depth_left: int) -> Any:
    """``value`` as a JSON value ml-dash accepts, or ``_SKIP`` (counted)."""
    if isinstance(value, enum.Enum):  # IntEnum and str enums too: their value is what a person set
        value = value.value if _is_scalar(value.value) and not isinstance(value.value, enum.Enum) else value.name
    if value is None or isinstance(value, bool):
        return bool(value) if value is not None else None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return int(value)
        tally.add("stringified", name)
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return _text(name, str(value), tally)
    if isinstance(value, numbers.Real):  # numpy scalars, Decimal, Fraction
        return _json_value(name, value.item() if hasattr(value, "item") else float(value), tally, depth_left)
    if depth_left > 1 and isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        converted = [_json_value(f"{name}[{i}]", item, tally, depth_left - 1) for i, item in enumerate(items)]
        return [item for item in converted if item is not _SKIP]
    mapping = as_mapping(value)
    if mapping is not None and depth_left > 1:  # an empty one, or one past the depth: kept as it is
        converted_map = {str(k): _json_value(f"{name}.{k}", v, tally, depth_left - 1) for k, v in mapping.items()}
        return {k: v for k, v in converted_map.items() if v is not _SKIP}
    tally.add("stringified", name)
    return _text(name, _describe(value), tally)


def _text(name: str, text: str, tally: Tally) -> Any:
    if len(text) > MAX_PARAM_CHARS:
        tally.add(f"skipped: text longer than {MAX_PARAM_CHARS:,} characters", name)
        return _SKIP
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from an undecodable file name): UTF-8 cannot carry it
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _describe(value: Any) -> str:
    """The text form of a value that is not JSON: a function or class by its qualified name (its repr
    holds a memory address that differs in every run), anything else by ``str``."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', None) or ''}.{value.__qualname__}".lstrip(".")
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a __str__ that fails: its type still says something
        return f"<{type(value).__name__}>"


def metric_fields(fields: Mapping[str, Any]) -> tuple[dict[str, Any], Tally | None]:
    """The fields of ``fields`` a metric row keeps, and the others counted (None when there are none:
    this runs at every logging step, and nothing is made for the usual row of numbers)."""
    row: dict[str, Any] = {}
    skipped: Tally | None = None
    for key, value in fields.items():
        name = str(key)
        if 0 < len(name) <= MAX_NAME_CHARS and name != "_ts" and _is_metric_value(value):
            row[name] = value
            continue
        skipped = skipped if skipped is not None else Tally()
        if _is_metric_value(value):
            skipped.add("skipped: not a metric field name", name[:80])
        else:
            skipped.add("skipped: not a scalar", name)
    return row, skipped


def _is_metric_value(value: Any) -> bool:
    cls = value.__class__
    if value is None or cls is float or cls is int or cls is bool:
        return cls is not int or INT_MIN <= value <= INT_MAX
    if isinstance(value, str):
        return len(value) <= MAX_METRIC_TEXT_CHARS
    if isinstance(value, numbers.Real):  # numpy scalars (the SDK converts them)
        return not isinstance(value, numbers.Integral) or INT_MIN <= int(value) <= INT_MAX
    numel = getattr(value, "numel", None)  # a one-element torch tensor: the agent reads it, off this thread
    if callable(numel) and hasattr(value, "dtype"):
        try:
            return numel() == 1 and not value.is_complex()
        except Exception:  # noqa: BLE001 - a tensor-like object we cannot ask is no metric value
            return False
    return False

