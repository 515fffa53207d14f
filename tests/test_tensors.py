"""Tensors are read by the agent, never synchronised on the caller's thread."""

from __future__ import annotations

import threading
from typing import ClassVar

import pytest

from ml_dash import Experiment

torch = pytest.importorskip("torch", reason="every test here is about torch tensors: torch is not installed")

#: Operations that read a tensor's value (on a CUDA device: wait for the GPU).
pytestmark = pytest.mark.usefixtures("logger_impl")

SYNCING = {"item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "to", "stack", "_local_scalar_dense"}


class CudaLikeTensor(torch.Tensor):
    """Records which thread runs each torch operation on it, and claims to live on a GPU."""

    calls: ClassVar[list[tuple[str, int]]] = []

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


def test_a_tensor_changed_in_place_after_the_call_is_logged_as_it_was(exp: Experiment) -> None:
    """``running_loss.zero_()`` right after logging it: the logged value is the one at the call, on the
    CPU (read then) and on a GPU-like tensor (copied then, read later by the agent)."""
    running, gpu_like = torch.tensor(3.5), torch.tensor(2.5).as_subclass(CudaLikeTensor)
    exp.metrics("train").log(cpu=running, gpu=gpu_like)
    running.zero_()
    gpu_like.zero_()
    data = exp.metrics("train").read()[0]["data"]
    assert (data["cpu"], data["gpu"]) == (3.5, 2.5)


class UnreadableTensor(CudaLikeTensor):
    """A GPU-like tensor whose read fails on the agent (a device error for this one value)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "stack":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().__torch_function__(func, types, args, kwargs or {})


def test_a_tensor_the_agent_cannot_read_costs_only_its_own_row(exp: Experiment) -> None:
    train = exp.metrics("train")
    for i in range(20):
        bad = i in (5, 13)
        value = (torch.tensor(float(i)).as_subclass(UnreadableTensor) if bad
                 else torch.tensor(float(i)).as_subclass(CudaLikeTensor))
        train.log(step=i, loss=value)
    exp.flush()
    assert [r["data"]["step"] for r in train.read(limit=None)] == [i for i in range(20) if i not in (5, 13)]
    stats = exp.stats()["streams"]["metrics/train"]
    assert stats["dropped"] == {"tensor_read_failed": 2} and stats["written"] == 18


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_tensor_changed_in_place_on_a_side_stream_is_logged_as_it_was(exp: Experiment) -> None:
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        loss = torch.full((), 7.0, device="cuda")
        torch.cuda._sleep(100_000_000)  # the value is still being made when it is logged
        loss.add_(1.0)
        exp.metrics("train").log(loss=loss)
        loss.zero_()
    assert exp.metrics("train").read()[0]["data"]["loss"] == 8.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_tensor_never_makes_the_training_thread_wait(exp: Experiment) -> None:
    """Neither log() nor the agent's read of the tensor may make the caller wait for the GPU.

    A blocking device-to-host copy on *any* thread holds the driver, so the
    training thread's next kernel launch would wait until the queued work ends.
    """
    import time

    train = exp.metrics("train")
    x = torch.ones((), device="cuda")
    cycles = 1_000_000_000
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch.cuda._sleep(cycles)
    torch.cuda.synchronize()
    sleep_s = time.perf_counter() - t0  # how long the queued work takes on this GPU
    assert sleep_s > 0.1, f"the GPU sleep kernel took only {sleep_s:.4f} s"

    torch.cuda._sleep(cycles)
    loss = x * 3  # queued behind the sleep: its value does not exist yet
    t0 = time.perf_counter()
    train.log(loss=loss)
    log_s = time.perf_counter() - t0
    time.sleep(exp._session.agent.flush_interval_s * 1.5)  # the agent is now reading the tensor
    t0 = time.perf_counter()
    y = x * 5  # a kernel launch on the training thread
    launch_s = time.perf_counter() - t0
    print(f"GPU work {sleep_s:.3f} s; log() {log_s * 1e6:.1f} us; launch while the agent reads {launch_s * 1e6:.1f} us")
    assert log_s < sleep_s / 10, f"log() took {log_s:.4f} s: it waited for the GPU"
    assert launch_s < sleep_s / 10, f"a launch took {launch_s:.4f} s while the agent read the tensor"
    assert exp.metrics("train").read()[0]["data"]["loss"] == 3.0
    assert y.item() == 5.0
