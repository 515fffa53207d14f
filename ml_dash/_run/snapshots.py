"""Freeze an object at the call so a file saved later holds it as it was.

Each function returns a writer ``write(path)`` that the agent runs on a worker
thread. Only the copy happens on the caller's thread:

* bytes/str: immutable (a bytearray is copied);
* dict/list: encoded to JSON now;
* other objects (``save_pkl``): pickled now;
* numpy arrays: copied;
* torch modules and tensors: every tensor of the ``state_dict`` is copied. A
  CPU tensor is cloned; a CUDA tensor is copied into pinned host memory with
  a non-blocking copy queued on its stream, and a CUDA event recorded after
  it. The caller never waits for the device; the worker waits for the event.
  Everything around the tensors is pickled once, tensors left out, so what
  ``torch.save`` could not pickle is refused at the call.

A value that cannot be written is a TypeError (ValueError for bad text) naming
the problem at the call, never a file dropped later on the agent.
* a path: copied at the call beside its destination (:class:`FileCopy`; the
  source is never moved or deleted).
"""

from __future__ import annotations

import contextlib
import copy as copymod
import itertools
import logging
import os
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..agent.tensors import wait_for_event
from ..format.jsonlines import dumps
from ..format.values import check_json, utf8_size

Writer = Callable[[Path], None]
logger = logging.getLogger("ml_dash")


def _write_bytes(data: bytes) -> Writer:
    def write(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(data)

    return write


def bytes_writer(data: bytes | bytearray | memoryview) -> Writer:
    return _write_bytes(bytes(data))


def text_writer(text: str) -> Writer:
    try:
        return _write_bytes(text.encode("utf-8"))
    except UnicodeEncodeError:
        utf8_size("the text to save", text)  # raises the ValueError naming the lone surrogate
        raise


def json_writer(obj: Any) -> Writer:
    """JSON of ``obj``, checked against the value domain first (ml_dash/format/values.py), so a value JSON
    cannot carry is refused at the call, naming where it is, never written as a broken file."""
    check_json("the object to save as JSON", obj)
    try:
        return _write_bytes(dumps(obj))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the object to save as JSON is not JSON-serialisable: {exc}") from None


def _not_picklable(what: str, exc: Exception) -> TypeError:
    """The TypeError for a value that cannot be pickled, naming the original failure (chained to it).
    Pickling runs the object's own code (``__getstate__``, ``__reduce__``), so anything can come out of
    it: a lambda (PicklingError/AttributeError), a lock or generator (TypeError), a multiprocessing Queue
    or Lock (RuntimeError), a DataLoader iterator (NotImplementedError), a ``__reduce__`` raising
    KeyError, a structure too deep (RecursionError). The caller gets one kind of error for all of them."""
    return TypeError(f"the object to save {what} cannot be pickled: {type(exc).__name__}: {exc}")


def pickle_writer(obj: Any) -> Writer:
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # whatever the object's own code raises (see _not_picklable)
        raise _not_picklable("as a pickle", exc) from exc
    return _write_bytes(data)


class FileCopy:
    """A file saved by its path, copied at the call (:meth:`stage`) to a hidden name beside its
    destination: a source rewritten right after the call (the next epoch's checkpoint) cannot reach
    the saved file, or tear it. The copy runs in the kernel (``sendfile``), about a second per GB on
    an SSD; the worker then only checksums and renames it."""

    _numbers = itertools.count()

    def __init__(self, source: Path) -> None:
        if not source.is_file():
            raise FileNotFoundError(f"no such file to save: {source}")
        self.source = source
        self.staged: Path | None = None

    def stage(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged = dest.with_name(f".{dest.name}.{os.getpid()}.{next(self._numbers)}.staged")
        try:
            shutil.copyfile(self.source, staged)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        self.staged = staged

    def __call__(self, path: Path) -> None:
        if self.staged is None:  # never staged (a job made by hand): copy now
            shutil.copyfile(self.source, path)
        else:
            os.replace(self.staged, path)

    def discard(self) -> None:
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)


def copy_writer(source: Path) -> FileCopy:
    return FileCopy(source)


def numpy_writer(array: Any) -> Writer:
    import numpy

    if array.dtype.hasobject:
        raise TypeError(f"cannot save a numpy array of dtype {array.dtype} (it holds Python objects, which .npy "
                        "keeps only by pickling); use save_pkl() for it, or convert it to a numeric dtype")
    frozen = numpy.array(array, copy=True)

    def write(path: Path) -> None:
        with open(path, "wb") as f:
            numpy.save(f, frozen, allow_pickle=False)

    return write


def is_torch_object(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, (torch.nn.Module, torch.Tensor))


def torch_writer(obj: Any) -> Writer:
    """Snapshot a module (as its ``state_dict``), a tensor, or a dict of tensors."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    try:
        snapshot, events = _snapshot_tree(obj)
    except RecursionError as exc:  # a structure nested deeper than Python recurses (torch.save could not either)
        raise _not_picklable("with torch.save", exc) from exc
    _check_torch_picklable(snapshot)

    def write(path: Path) -> None:
        for event in events:  # polled: a blocking wait would stall the training thread's launches
            wait_for_event(event, timeout_s=600)
        torch.save(snapshot, path)

    return write


class _Discard:
    """A file that keeps nothing: the check below needs only whether pickling succeeds."""

    def write(self, data: bytes) -> int:
        return len(data)


def _check_torch_picklable(snapshot: Any) -> None:
    """Pickle what ``torch.save`` will pickle, its tensors and storages left out (torch.save stores them
    apart too, so the cost is the rest: the dicts, the numbers, the optimizer's settings)."""
    import torch

    apart = (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)

    class TensorsApart(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return 0 if isinstance(obj, apart) else None

    try:
        TensorsApart(_Discard(), protocol=torch.serialization.DEFAULT_PROTOCOL).dump(snapshot)
    except Exception as exc:  # whatever the object's own code raises (see _not_picklable)
        raise _not_picklable("with torch.save", exc) from exc


def _snapshot_tree(obj: Any) -> tuple[Any, list]:
    import torch

    events: list = []

    def copy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return _snapshot_tensor(value, events)
        if isinstance(value, dict):
            out = _rebuilt_dict(value, [(k, copy(v)) for k, v in value.items()])
            if hasattr(value, "_metadata"):  # keeps load_state_dict's version info
                out._metadata = value._metadata  # type: ignore[attr-defined]
            return out
        if isinstance(value, list):
            return _rebuilt_list(value, [copy(v) for v in value])
        if isinstance(value, tuple):
            return _rebuilt_tuple(value, [copy(v) for v in value])
        return value

    return copy(obj), events


# Containers are rebuilt around their copied tensors as what they were: torch.save keeps a defaultdict
# (with its default_factory), an OrderedDict, a namedtuple, a subclass with attributes. ``type(value)(items)``
# is wrong for several (defaultdict takes the factory first, a namedtuple its fields one by one), so a
# shallow copy, which carries the type and its state the way pickle would, is emptied and refilled.
# What cannot be rebuilt so is saved as its base type, and said.

def _rebuilt_dict(value: dict, items: list) -> dict:
    if type(value) is dict:
        return dict(items)
    try:
        out = copymod.copy(value)
        out.clear()
        out.update(items)
        return out
    except Exception:  # noqa: BLE001  # a subclass whose copy or update refuses: its base type keeps the data
        _note_plain(value, "dict")
        return dict(items)


def _rebuilt_list(value: list, items: list) -> list:
    if type(value) is list:
        return items
    try:
        out = copymod.copy(value)
        out[:] = items
        return out
    except Exception:  # noqa: BLE001  # as for dicts
        _note_plain(value, "list")
        return items


def _rebuilt_tuple(value: tuple, items: list) -> tuple:
    if type(value) is tuple:
        return tuple(items)
    if hasattr(type(value), "_fields"):  # a namedtuple: its fields one by one
        with contextlib.suppress(Exception):  # a namedtuple subclass with another constructor: tried below
            return type(value)(*items)
    try:
        return type(value)(items)  # a structseq (torch.return_types), most other subclasses
    except Exception:  # noqa: BLE001  # as for dicts
        _note_plain(value, "tuple")
        return tuple(items)


def _note_plain(value: Any, base: str) -> None:
    logger.warning("ml-dash: save_torch: a %s.%s in the saved object could not be rebuilt around its copied "
                   "tensors; it is saved as a plain %s", type(value).__module__, type(value).__qualname__, base)


def _snapshot_tensor(tensor: Any, events: list) -> Any:
    import torch

    tensor = tensor.detach()
    if tensor.is_cuda:
        host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(tensor.device))
        events.append(event)
        return host
    return tensor.clone()


def writer_for(obj: Any) -> tuple[Writer, str]:
    """Pick the writer for ``obj``; return it with the content type to record."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes_writer(obj), "application/octet-stream"
    if isinstance(obj, os.PathLike):
        return copy_writer(Path(obj)), _guess_type(Path(obj).name)
    if isinstance(obj, str):
        if os.path.isfile(obj):
            return copy_writer(Path(obj)), _guess_type(obj)
        return text_writer(obj), "text/plain"
    if isinstance(obj, (dict, list)) and not _holds_tensors(obj):
        return json_writer(obj), "application/json"
    if is_torch_object(obj) or _holds_tensors(obj):
        return torch_writer(obj), "application/x-pytorch"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray):
        return numpy_writer(obj), "application/x-npy"
    raise TypeError(
        f"cannot save an object of type {type(obj).__name__}; save a torch module or tensor, bytes, str, "
        "dict/list (JSON), a numpy array or a path, or use save_pkl() for other picklable objects"
    )


def _holds_tensors(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, (dict, list, tuple)):
        return False
    values = obj.values() if isinstance(obj, dict) else obj
    return any(isinstance(v, torch.Tensor) for v in values)


def _guess_type(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"
