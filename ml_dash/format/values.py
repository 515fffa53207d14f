"""The value domain: what ml-dash accepts at the call, and therefore delivers everywhere.

Every value handed to ml-dash is checked on the caller's thread before it is
buffered. It is either refused there, with a ``TypeError`` (wrong kind) or
``ValueError`` (right kind, out of the domain) that names the field and the
reason, or it can be written to disk, sent on the wire, stored by the server
and read back by every reader (``read()``, ``ml-dash sync``, ``ml-dash pull``)
unchanged:

=================  ===========================================================
int                -2**63 .. 2**63-1 (what msgpack, SQLite and PostgreSQL hold)
float              any, NaN and infinities included (they round-trip)
bool, None
str                valid Unicode: no lone surrogates (``surrogateescape`` makes
                   them from undecodable file names; UTF-8 cannot carry them)
numpy scalars      converted to the Python value at the call (ranges as above)
torch tensors      metrics only: one element of a real dtype (:data:`TENSOR_DTYPES`:
                   floats of 8 to 64 bits, bool, ints up to 64 bits signed or 32
                   unsigned), dense, not on the meta device. A CPU tensor's value
                   is taken at the call; a GPU tensor is copied on the device at
                   the call (queued on the caller's stream, never waited for) and
                   read later by the agent
dict, list, tuple  parameters and metadata only: str keys, nested at most
                   :data:`MAX_DEPTH` deep
=================  ===========================================================

Sizes (estimated as the UTF-8 bytes of the names and strings plus
:data:`VALUE_BYTES` for any other value): a metric row or a log line at most
:data:`MAX_ROW_BYTES`; parameters and run metadata at most
:data:`MAX_DOCUMENT_BYTES` as JSON; a description or status reason at most
:data:`MAX_TEXT_BYTES`; a field name at most :data:`MAX_NAME_CHARS` characters.
"""

from __future__ import annotations

import math
import sys
from typing import Any

INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
MAX_ROW_BYTES = 1 << 20  # 1 MiB: a metric row, or a log line with its metadata
MAX_DOCUMENT_BYTES = 1 << 20  # 1 MiB of JSON: parameters, experiment or file metadata
MAX_TEXT_BYTES = 64 << 10  # 64 KiB: a description, a status reason
MAX_NAME_CHARS = 256  # a metric field name, a parameter key segment, a tag
MAX_DEPTH = 32  # nesting of dicts and lists in parameters and metadata
VALUE_BYTES = 16  # the size estimate of one value that is not a string
#: Rows whose strings hold this many characters in all, and rows this narrow, are covered by a
#: stream's fixed per-row memory estimate; others are buffered with their own size.
SMALL_STR_CHARS = 64
NARROW_ROW_FIELDS = 32
RESERVED_FIELD = "_ts"  # the logging time, added to every metric row

#: Value classes a metric row holds as they are (after the checks of :func:`metric_value`).
PLAIN_SCALARS = frozenset({float, int, bool, str, type(None)})


def utf8_size(what: str, text: str) -> int:
    """The UTF-8 length of ``text``; ValueError naming ``what`` for a lone surrogate."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} holds the lone surrogate {text[exc.start]!r} at position {exc.start}, which UTF-8 "
            "cannot carry (surrogateescape makes these from undecodable bytes); decode with "
            "errors='replace' or pass repr() of it"
        ) from None


def check_text(what: str, value: Any, max_bytes: int) -> str:
    """A str (subclasses become str) of at most ``max_bytes`` UTF-8 bytes."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    value = str(value)
    size = utf8_size(what, value)
    if size > max_bytes:
        raise ValueError(f"{what} is {size:,} bytes long; the limit is {max_bytes:,}")
    return value


def check_int(what: str, value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{what} = {value} does not fit in 64 bits (-2**63 .. 2**63-1); "
                         "log it as a float or a str")
    return value


def check_name(what: str, name: Any) -> str:
    """A field name: a non-empty str of at most :data:`MAX_NAME_CHARS` characters."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}: {name!r}")
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"{what} {name[:40]!r} must be 1 to {MAX_NAME_CHARS} characters long")
    utf8_size(f"{what} {name!r}", name)
    return str(name)


def metric_value(what: str, value: Any) -> tuple[Any, int]:
    """What to buffer for one metric field, and its size estimate; raises for anything else."""
    cls = value.__class__
    if value is None or cls is bool or cls is float:
        return value, VALUE_BYTES
    if cls is int:
        return check_int(what, value), VALUE_BYTES
    if cls is str:
        return value, utf8_size(what, value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return capture_tensor(what, value)
    if isinstance(value, str):  # a subclass: numpy.str_, a str enum
        value = str(value)
        return value, utf8_size(what, value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.generic, numpy.ndarray)):
        return metric_value(what, numpy_scalar(what, value))
    if isinstance(value, bool):
        return bool(value), VALUE_BYTES
    if isinstance(value, int):  # IntEnum and friends
        return check_int(what, int(value)), VALUE_BYTES
    if isinstance(value, float):
        return float(value), VALUE_BYTES
    raise TypeError(f"{what} has unsupported type {cls.__name__}; use int, float, bool, None, str, "
                    "a numpy scalar or a one-element tensor")


def numpy_scalar(what: str, value: Any) -> Any:
    """The Python value of a numpy scalar or one-element array of a real or bool dtype."""
    kind = value.dtype.kind
    if getattr(value, "size", 1) != 1 or kind not in "biuf":
        raise TypeError(f"{what} is a numpy {type(value).__name__} of dtype {value.dtype} and shape "
                        f"{getattr(value, 'shape', ())}; log one real number")
    item = value.reshape(()).item() if hasattr(value, "reshape") and value.ndim else value.item()
    if kind == "f":
        return float(item)
    if kind == "b":
        return bool(item)
    return check_int(what, int(item))


#: The tensor dtypes a metric value may have (by name, so that a torch without one still loads): those
#: torch can read back as one Python number. Packed sub-byte dtypes (float4_e2m1fn_x2, int1-int7,
#: bits8...) hold no such number, complex ones hold two, uint64 exceeds the int range.
TENSOR_DTYPES = frozenset({
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
    "float8_e5m2fnuz", "float8_e8m0fnu", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
})


def check_tensor(what: str, tensor: Any) -> Any:
    """A tensor the agent can read as one real number (metadata only: never touches device memory)."""
    import torch

    if tensor.numel() != 1:
        raise TypeError(f"{what} is a tensor of shape {tuple(tensor.shape)}; log a one-element tensor")
    dtype = tensor.dtype
    if tensor.layout != torch.strided or tensor.device.type == "meta" or tensor.is_quantized:
        raise TypeError(f"{what} is a {tensor.layout} tensor on {tensor.device}; log a dense one-element tensor")
    if dtype.is_complex:
        raise TypeError(f"{what} is a complex tensor ({dtype}); log its .real and .imag as two fields")
    if str(dtype).removeprefix("torch.") not in TENSOR_DTYPES:
        raise TypeError(f"{what} is a tensor of dtype {dtype}; use a float, bool or integer dtype of at most "
                        "64 bits signed (32 unsigned)")
    return tensor


def capture_tensor(what: str, tensor: Any) -> tuple[Any, int]:
    """A logged tensor's value as it is at the call. On the CPU that is cheap: its number, now. On a
    GPU a read would wait for the device, so the element is copied there instead (one small kernel,
    queued on the caller's current stream, which the copy remembers for the agent's read): training
    may change the tensor in place right after, and a one-element view no longer keeps its whole
    storage alive."""
    import torch

    check_tensor(what, tensor)
    if tensor.device.type == "cpu" and not tensor.is_cuda:
        return metric_value(what, tensor.detach().reshape(()).item())
    with torch.no_grad():
        copy = tensor.detach().reshape(()).clone()
    if tensor.device.type == "cuda":
        copy._ml_dash_stream = torch.cuda.current_stream(tensor.device)
    return copy, VALUE_BYTES


def check_json(what: str, value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Check a parameter or metadata value: JSON-shaped, within the domain, nested at most ``max_depth``."""
    numpy = sys.modules.get("numpy")
    pending: list[tuple[str, Any, int]] = [(what, value, 0)]
    while pending:  # iterative: a hostile 100,000-deep structure must not hit Python's recursion limit
        where, item, depth = pending.pop()
        cls = item.__class__
        if item is None or cls is bool or cls is float:
            continue
        if cls is str or isinstance(item, str):
            utf8_size(where, item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            check_int(where, int(item))
        elif isinstance(item, float):
            continue
        elif isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                raise ValueError(f"{where} is nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise TypeError(f"{where} has a key of type {type(key).__name__} ({key!r}); keys must be str")
                    utf8_size(f"{where} key {key[:40]!r}", key)
                    pending.append((f"{where}[{key[:40]!r}]", child, depth + 1))
            else:
                pending.extend((f"{where}[{i}]", child, depth + 1) for i, child in enumerate(item))
        elif numpy is not None and isinstance(item, numpy.generic):
            numpy_scalar(where, item)
        elif numpy is not None and isinstance(item, numpy.ndarray):
            if item.dtype.kind not in "biuf":
                raise TypeError(f"{where} is a numpy array of dtype {item.dtype}; only real and bool arrays are kept")
            if item.dtype.kind == "u" and item.dtype.itemsize == 8 and item.size and int(item.max()) > INT_MAX:
                raise ValueError(f"{where} holds a uint64 past 2**63-1")
        else:
            raise TypeError(f"{where} has unsupported type {cls.__name__}; use str, int, float, bool, None, "
                            "or dicts and lists of them")


def reason_text(reason: Any) -> str | None:
    """A status reason as stored: a str or an exception (``"ValueError: x"``), cut to :data:`MAX_TEXT_BYTES`."""
    if reason is None:
        return None
    if isinstance(reason, BaseException):
        try:
            detail = str(reason)
        except Exception:  # noqa: BLE001  # a broken __str__ must not keep the run from ending
            detail = "<its str() failed>"
        reason = f"{type(reason).__name__}: {detail}"
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a str or an exception, not {type(reason).__name__}")
    text = str(reason).encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes '?'
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_TEXT_BYTES:  # a long traceback is cut, never refused: the run must still end
        text = encoded[:MAX_TEXT_BYTES - 3].decode("utf-8", "ignore") + "..."
    return text


def to_builtin(value: Any) -> Any:
    """The encoders' hook (JSON lines and the msgpack wire), for what :func:`check_json` keeps and msgspec
    does not encode itself: numpy scalars and arrays become Python numbers and lists, and subclasses of
    str, int and float (a string type of a config library, an int subclass; enums msgspec encodes) their
    plain value; any other type is refused."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.generic, numpy.ndarray)):
        if value.dtype.kind == "f" and value.dtype.itemsize > 8:  # longdouble: tolist() keeps it numpy
            value = value.astype(numpy.float64)
        return value.tolist()
    for plain in (str, int, float):  # bool cannot be subclassed, and msgspec encodes bool itself
        if isinstance(value, plain):
            return plain(value)
    raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def non_finite_name(value: Any) -> str | None:
    """The JSON-safe spelling of a non-finite float, or None for anything else."""
    if isinstance(value, float) or (
        (np := sys.modules.get("numpy")) is not None and isinstance(value, np.floating)
    ):
        f = float(value)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
    return None


NON_FINITE_VALUES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
