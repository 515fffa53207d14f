"""Which values a metric row or log metadata may hold, and how tensors get resolved.

The caller's thread only *classifies* a value (cheap ``type()`` checks, no
torch import, no device synchronisation). Tensors are resolved to Python
numbers later on the agent's side, all tensors of a batch at once, so a CUDA
tensor costs the training loop nothing but a reference.
"""

from __future__ import annotations

import math
import sys
from typing import Any

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


class TensorRead:
    """Scalar tensors on their way to the host, without blocking any thread.

    A blocking device-to-host copy (``.item()``, ``.cpu()``) on any thread holds
    the CUDA driver until the GPU has drained its queue: measured on an H200,
    the training thread's next kernel launch then waited 454 ms. So CUDA values
    are stacked, copied into pinned host memory with ``non_blocking=True`` and
    followed by an event; the agent polls :meth:`ready` and reads the host copy
    once the event has passed. Tensors are read in order with the work queued
    on their device's current stream.
    """

    def __init__(self, values: list[Any]) -> None:
        import torch  # only reached when the user passed tensors, so torch is loaded

        self.numbers: list[Any] = [None] * len(values)
        self._pending: list[tuple[list[int], Any, Any]] = []
        by_group: dict[Any, list[int]] = {}
        for i, tensor in enumerate(values):
            by_group.setdefault((tensor.device, tensor.dtype), []).append(i)
        with torch.no_grad():
            for (device, _), positions in by_group.items():
                stacked = torch.stack([values[i].detach().reshape(()) for i in positions])
                if device.type == "cuda":
                    host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
                    host.copy_(stacked, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record(torch.cuda.current_stream(device))
                    self._pending.append((positions, host, event))
                else:
                    self._fill(positions, stacked.tolist())

    def ready(self) -> bool:
        """True once every copy has reached the host (never blocks)."""
        return all(event.query() for _, _, event in self._pending)

    def finish(self) -> list[Any]:
        """The numbers, in the order of the tensors given (call after :meth:`ready`)."""
        for positions, host, _ in self._pending:
            self._fill(positions, host.tolist())
        self._pending = []
        return self.numbers

    def _fill(self, positions: list[int], numbers: list[Any]) -> None:
        for i, number in zip(positions, numbers):
            self.numbers[i] = number


def numpy_to_builtin(value: Any) -> Any:
    """The encoders' hook (JSON lines and the msgpack wire): numpy scalars and arrays, which the
    agent's rows may hold, become Python numbers and lists; any other type is refused."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.generic, numpy.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def wait_for_event(event: Any, timeout_s: float) -> None:
    """Poll a CUDA event until it has passed (worker thread); never a blocking driver wait."""
    import time

    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while not event.query():
        if time.monotonic() > deadline:
            raise TimeoutError(f"GPU work did not finish within {timeout_s} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


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
