"""Tensors are read by the agent, never synchronised on the caller's thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from ml_dash import Experiment

#: Operations that read a tensor's value (on a CUDA device: wait for the GPU).
SYNCING = {"item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "to", "stack", "_local_scalar_dense"}


class CudaLikeTensor(torch.Tensor):
    """Records which thread runs each torch operation on it, and claims to live on a GPU."""

    calls: list[tuple[str, int]] = []

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        cls.calls.append((name, threading.get_ident()))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_cuda_like_tensor_is_never_synchronised_on_the_caller_thread(exp: Experiment) -> None:
    CudaLikeTensor.calls = []
    caller = threading.get_ident()
    losses = [torch.tensor(0.25 * i).as_subclass(CudaLikeTensor) for i in range(50)]
    for i, loss in enumerate(losses):
        exp.metrics("train").log(loss=loss, step=i)
    on_caller = {name for name, thread in CudaLikeTensor.calls if thread == caller}
    assert not (on_caller & SYNCING), f"synchronising calls on the caller thread: {on_caller & SYNCING}"
    rows = exp.metrics("train").read(limit=None)
    assert [r["data"]["loss"] for r in rows] == [0.25 * i for i in range(50)]
    off_caller = {name for name, thread in CudaLikeTensor.calls if thread != caller}
    assert off_caller & SYNCING  # the agent did read them


def test_all_tensors_of_a_chunk_are_read_with_one_stack(exp: Experiment) -> None:
    CudaLikeTensor.calls = []
    for i in range(100):
        exp.metrics("train").log(loss=torch.tensor(float(i)).as_subclass(CudaLikeTensor))
    exp.flush()
    stacks = [name for name, _ in CudaLikeTensor.calls if name == "stack"]
    assert 1 <= len(stacks) <= 3  # one per chunk written, not one per tensor


def test_tensors_requiring_grad_and_of_other_dtypes(exp: Experiment) -> None:
    w = torch.tensor(2.0, requires_grad=True)
    loss = (w * 3) ** 2
    exp.metrics("train").log(loss=loss, count=torch.tensor(5), flag=torch.tensor(True), half=torch.tensor(0.5, dtype=torch.float16))
    data = exp.metrics("train").read()[0]["data"]
    assert data["loss"] == 36.0 and data["count"] == 5 and data["flag"] is True and data["half"] == 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_tensor_log_returns_while_the_gpu_is_still_busy(exp: Experiment) -> None:
    """A synchronising log() would wait for the queued GPU work (~0.2 s); ours returns at once."""
    import time

    train = exp.metrics("train")
    x = torch.ones((), device="cuda")
    torch.cuda.synchronize()
    torch.cuda._sleep(400_000_000)  # keeps the GPU busy for ~0.2 s at ~2 GHz
    loss = x * 3  # queued behind the sleep: its value does not exist yet
    t0 = time.perf_counter()
    train.log(loss=loss)
    elapsed = time.perf_counter() - t0
    assert not torch.cuda.current_stream().query()  # the GPU is still busy, so nothing waited for it
    assert elapsed < 0.01
    assert exp.metrics("train").read()[0]["data"]["loss"] == 3.0
