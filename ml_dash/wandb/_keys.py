"""How a W&B history key and value become an ml-dash metric stream, field and value.

=========================  ==============================================================
``wandb.log`` key          ml-dash
=========================  ==============================================================
``"train/loss"``           field ``loss`` of the metric stream ``train``
``"a/b/c"``                field ``b/c`` of the stream ``a`` (a field name may hold ``/``)
``"epoch"`` (no ``/``)     field ``epoch`` of the stream :data:`DEFAULT_STREAM` (``default``,
                           the stream ``exp.metrics.log()`` writes)
``{"val": {"acc": 1}}``    nested dicts join with ``.`` as W&B joins them: key ``val.acc``
=========================  ==============================================================

Every committed row also carries :data:`STEP_FIELD` (W&B's ``_step``) in each stream it touches, so
the rows of one ``wandb.log`` call are joined back by that field. Values are checked at the call
against the metric value domain (ml_dash/format/values.py): numbers, bools, None, str, numpy
scalars and one-element tensors. Anything else (images, tables, histograms, lists, arrays) raises
``NotImplementedError`` naming the call, the key and the type: it is never dropped silently.
"""

from __future__ import annotations

from typing import Any

from ..format.naming import validate_metric_name
from ..format.values import MAX_DEPTH, RESERVED_FIELD, check_name, metric_value
from ..metrics import DEFAULT_METRIC

#: The stream of W&B keys without ``/`` (the SDK's unnamed stream).
DEFAULT_STREAM = DEFAULT_METRIC
#: W&B's step counter, written into every row of a committed step.
STEP_FIELD = "_step"
_RESERVED = (STEP_FIELD, RESERVED_FIELD)


def split_key(call: str, key: str) -> tuple[str, str]:
    """``"train/loss"`` -> ``("train", "loss")``; ``"epoch"`` -> ``(DEFAULT_STREAM, "epoch")``."""
    if not isinstance(key, str):
        raise TypeError(f"{call}: keys must be str, got {key!r}")
    stream, slash, field = key.partition("/")
    if not slash:
        stream, field = DEFAULT_STREAM, key
    elif not stream or not field:
        raise ValueError(f"{call}: key {key!r} has an empty part before or after '/'; use 'stream/field' or 'field'")
    try:
        validate_metric_name(stream)
    except ValueError as exc:
        raise ValueError(f"{call}: key {key!r}: the part before the first '/' names the metric stream; {exc}") from None
    check_name(f"{call}: the field of key {key!r}", field)
    if field in _RESERVED:
        raise ValueError(f"{call}: key {key!r}: {field!r} is reserved (ml-dash records the step and the time in it)")
    return stream, field


def flatten_row(call: str, row: Any) -> dict[str, Any]:
    """The row with nested dicts joined by ``.`` (W&B's way); TypeError for a row that is not a dict."""
    if not isinstance(row, dict):
        raise TypeError(f"{call} takes a dict of key -> value, not {type(row).__name__}")
    for value in row.values():
        if value.__class__ is dict:
            break
    else:  # nothing nested (the usual row): a copy, so that the caller's dict is never changed
        return dict(row) if all(key.__class__ is str for key in row) else _refuse_keys(call, row)
    flat: dict[str, Any] = {}
    pending: list[tuple[str, dict[str, Any], int]] = [("", row, 0)]
    while pending:  # iterative, bounded: a deep dict must not hit the recursion limit
        parent, node, depth = pending.pop()
        if depth >= MAX_DEPTH:
            raise ValueError(f"{call}: values nested deeper than {MAX_DEPTH} levels at {parent[:80]!r}")
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(f"{call}: keys must be str, got {key!r}")
            full = f"{parent}.{key}" if parent else key
            if isinstance(value, dict) and value:
                pending.append((full, value, depth + 1))
            else:
                flat[full] = value
    return flat


def _refuse_keys(call: str, row: dict[Any, Any]) -> dict[str, Any]:
    key = next(k for k in row if not isinstance(k, str))
    raise TypeError(f"{call}: keys must be str, got {key!r}")


def metric_of(call: str, key: str, value: Any) -> Any:
    """The value a metric row holds for ``value`` (numpy scalars converted, tensors captured), or
    NotImplementedError for what ml-dash metrics cannot hold; ValueError for an out-of-domain value."""
    try:
        converted, _size = metric_value(f"{call}: {key!r}", value)
    except TypeError:
        raise NotImplementedError(_unsupported_value(call, key, value)) from None
    return converted


def _unsupported_value(call: str, key: str, value: Any) -> str:
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return (f"{call}: {key!r} is a {name}; ml-dash metrics hold one number, bool, None or str per key "
            "(numpy scalars and one-element tensors included). Log a scalar (a mean, a max), or save the "
            "object as a file with wandb.save() or the Experiment's files")
