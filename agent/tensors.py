"""Logged torch tensors on their way to the host, without ever blocking a thread.

The caller's thread only keeps a reference to a logged tensor (no torch import
when the user never did, no device synchronisation); the agent reads every
tensor of a batch here, all at once.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def is_tensor(value: Any) -> bool:
    """True for a torch tensor, without importing torch when the user never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


#: 8-bit float dtypes are widened on the device before the copy (exact: float32 holds every value),
#: so the host only ever reads common dtypes. Filled on first use (torch is then loaded).
_READABLE_ON_HOST: dict[Any, bool] = {}


def _note_narrow_floats() -> None:
    import torch

    for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu"):
        dtype = getattr(torch, name, None)
        if dtype is not None:
            _READABLE_ON_HOST[dtype] = False


class TensorRead:
    """Scalar tensors on their way to the host, without blocking any thread.

    A blocking device-to-host copy (``.item()``, ``.cpu()``) on any thread holds
    the CUDA driver until the GPU has drained its queue: measured on an H200,
    the training thread's next kernel launch then waited 454 ms. So CUDA values
    are stacked, copied into pinned host memory with ``non_blocking=True`` and
    followed by an event; the agent polls :meth:`ready` and reads the host copy
    once the event has passed. Tensors are read in order with the work queued
    on the stream the caller logged them on (see ml_dash/format/values.py: capture_tensor).
    """

    def __init__(self, values: list[Any]) -> None:
        import torch  # only reached when the user passed tensors, so torch is loaded

        if not _READABLE_ON_HOST:
            _note_narrow_floats()
        self.numbers: list[Any] = [None] * len(values)
        self._pending: list[tuple[list[int], Any, Any]] = []
        by_group: dict[Any, list[int]] = {}
        for i, tensor in enumerate(values):
            stream = getattr(tensor, "_ml_dash_stream", None)
            by_group.setdefault((tensor.device, tensor.dtype, stream), []).append(i)
        with torch.no_grad():
            for (device, _, stream), positions in by_group.items():
                if device.type != "cuda":
                    self._fill(positions, torch.stack([values[i].reshape(()) for i in positions]).tolist())
                    continue
                with torch.cuda.stream(stream or torch.cuda.current_stream(device)):  # after the caller's copy
                    stacked = torch.stack([values[i].reshape(()) for i in positions])
                    if not _READABLE_ON_HOST.get(stacked.dtype, True):
                        stacked = stacked.to(torch.float32)
                    host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
                    host.copy_(stacked, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                self._pending.append((positions, host, event))

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


def wait_for_event(event: Any, timeout_s: float) -> None:
    """Poll a CUDA event until it has passed (worker thread); never a blocking driver wait."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while not event.query():
        if time.monotonic() > deadline:
            raise TimeoutError(f"GPU work did not finish within {timeout_s} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
