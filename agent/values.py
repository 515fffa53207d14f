"""Which values a metric row or log metadata may hold, and how tensors get resolved.

The caller's thread only *classifies* a value (cheap ``type()`` checks, no
torch import, no device synchronisation). Tensors are resolved to Python
numbers later on the agent's side, all tensors of a batch at once, so a CUDA
tensor costs the training loop nothing but a reference.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Iterable

#: Value classes accepted as-is on the hot path.
PLAIN_SCALARS = frozenset({float, int, bool, str, type(None)})


def is_tensor(value: Any) -> bool:
    """True for a torch tensor, without importing torch when the user never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def check_scalar(name: str, value: Any) -> Any:
    """Validate a non-plain metric value at the call; return what to buffer.

    Accepts numpy scalars (and 0-d arrays, converted here since that is a CPU
    read) and single-element torch tensors (kept as they are: the agent reads
    them). Raises ``TypeError`` naming the field for anything else.
    """
    if is_tensor(value):
        if value.numel() != 1:  # metadata only: never touches device memory
            raise TypeError(
                f"metric field {name!r} is a tensor of shape {tuple(value.shape)}; "
                "log a scalar (0-d or one-element) tensor"
            )
        return value
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic) and value.dtype.kind in "biuf":
            return value
        if isinstance(value, numpy.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
            return value.reshape(()).item()
    raise TypeError(
        f"metric field {name!r} has unsupported type {type(value).__name__}; "
        "use int, float, bool, str, None, a numpy scalar or a scalar tensor"
    )


def resolve_tensors(values: list[Any]) -> list[float | int | bool]:
    """Read many scalar tensors with one device synchronisation per device.

    Runs on an agent worker thread. Tensors are grouped by device and stacked,
    so N CUDA tensors cost one kernel and one device-to-host copy instead of N
    blocking ``.item()`` calls.
    """
    import torch  # only reached when the user passed tensors, so torch is loaded

    out: list[Any] = [None] * len(values)
    by_device: dict[Any, list[int]] = {}
    for i, tensor in enumerate(values):
        by_device.setdefault((tensor.device, tensor.dtype), []).append(i)
    with torch.no_grad():
        for positions in by_device.values():
            stacked = torch.stack([values[i].detach().reshape(()) for i in positions])
            for i, number in zip(positions, stacked.cpu().tolist()):
                out[i] = number
    return out


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


def iter_tensor_slots(rows: Iterable[dict[str, Any]]) -> Iterable[tuple[dict[str, Any], str]]:
    """Yield (row, key) for every tensor value among ``rows``."""
    for row in rows:
        for key, value in row.items():
            if is_tensor(value):
                yield row, key
