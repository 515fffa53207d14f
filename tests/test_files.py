"""exp.files: saving objects and existing files, snapshots, metadata, names."""

from __future__ import annotations

import collections
import gc
import hashlib
import json
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from ml_dash import Experiment, RunStateError

from .conftest import read_json
from .optional import nn, torch


def _entries(exp: Experiment) -> dict[str, dict]:
    exp.flush()
    return {e["path"]: e for e in read_json(exp.directory / "files/.files_metadata.json")["files"]}


def test_module_is_saved_as_a_state_dict_loadable_with_weights_only(exp: Experiment) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    exp.files("models").save(net, "model.pth")
    exp.flush()
    state = torch.load(exp.directory / "files/models/model.pth", weights_only=True)
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh.load_state_dict(state)
    for a, b in zip(net.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_the_saved_module_is_the_one_at_the_call(exp: Experiment) -> None:
    net = nn.Linear(3, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    exp.files("models").save(net, "model.pth")
    with torch.no_grad():
        net.weight.add_(100.0)  # the training loop goes on right after the call
    exp.flush()
    state = torch.load(exp.directory / "files/models/model.pth", weights_only=True)
    assert torch.equal(state["weight"], before["weight"])


def test_tensor_numpy_bytes_text_and_json_are_saved(exp: Experiment) -> None:
    scope = exp.files("artifacts")
    array = np.arange(6).reshape(2, 3)
    scope.save(torch.arange(4), "t.pt")
    scope.save(array, "a.npy")
    scope.save(b"\x00\x01", "raw.bin")
    scope.save("hello", "note.txt")
    scope.save({"k": [1, 2], "nan": float("nan")}, "cfg.json")
    scope.save([1, 2, 3], "list.json")
    array[0, 0] = 99  # snapshot at the call
    exp.flush()
    root = exp.directory / "files/artifacts"
    assert torch.equal(torch.load(root / "t.pt", weights_only=True), torch.arange(4))
    assert np.load(root / "a.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert (root / "raw.bin").read_bytes() == b"\x00\x01"
    assert (root / "note.txt").read_text() == "hello"
    assert json.loads((root / "cfg.json").read_text()) == {"k": [1, 2], "nan": "NaN"}
    assert json.loads((root / "list.json").read_text()) == [1, 2, 3]


def test_existing_file_is_copied_with_prefix_and_the_source_is_kept(exp: Experiment, workdir: Path) -> None:
    source = workdir / "model.pth"
    source.write_bytes(b"weights")
    exp.files("model.pth", prefix="/models")
    exp.flush()
    assert (exp.directory / "files/models/model.pth").read_bytes() == b"weights"
    assert source.read_bytes() == b"weights"


def test_a_file_saved_by_path_is_the_one_at_the_call(exp: Experiment, workdir: Path) -> None:
    """The next epoch's checkpoint rewrites (or removes) the source right after the call: the saved
    file still holds what the source held at the call, and no staged copy is left behind."""
    rewritten, removed = workdir / "ckpt.pt", workdir / "gone.pt"
    rewritten.write_bytes(b"epoch 1")
    removed.write_bytes(b"kept")
    exp.files("ckpt").save(rewritten, "ckpt.pt")
    exp.files("ckpt").upload(removed)
    rewritten.write_bytes(b"epoch 2, half writ")
    removed.unlink()
    exp.flush()
    assert (exp.directory / "files/ckpt/ckpt.pt").read_bytes() == b"epoch 1"
    assert (exp.directory / "files/ckpt/gone.pt").read_bytes() == b"kept"
    assert _entries(exp)["ckpt/ckpt.pt"]["checksum"] == hashlib.sha256(b"epoch 1").hexdigest()
    assert sorted(p.name for p in (exp.directory / "files/ckpt").iterdir()) == ["ckpt.pt", "gone.pt"]


def test_metadata_is_the_one_at_the_call(workdir: Path) -> None:
    run_meta, file_meta = {"gpu": "a100", "lr": [1, 2]}, {"epoch": 1}
    exp = Experiment(prefix="a/b/meta", metadata=run_meta)
    with exp.run:
        exp.files("f", metadata=file_meta).save(b"x", "x.bin")
        exp.files("g").save(b"y", "y.bin", metadata=file_meta)
        run_meta["gpu"], run_meta["lr"][0], file_meta["epoch"] = "changed", 99, 2
        exp.metadata["gpu"] = "changed through the property"
    assert read_json(exp.directory / "experiment.json")["metadata"] == {"gpu": "a100", "lr": [1, 2]}
    assert exp.metadata == {"gpu": "a100", "lr": [1, 2]}
    entries = {e["path"]: e for e in read_json(exp.directory / "files/.files_metadata.json")["files"]}
    assert entries["f/x.bin"]["metadata"] == {"epoch": 1} and entries["g/y.bin"]["metadata"] == {"epoch": 1}


def test_a_path_saved_after_the_end_leaves_no_copy_and_a_crash_leftover_goes_at_the_next_start(
        workdir: Path) -> None:
    source = workdir / "w.bin"
    source.write_bytes(b"w")
    exp = Experiment(prefix="a/b/late")
    with exp.run:
        exp.files("m").save(b"first", "first.bin")
    with pytest.raises(RunStateError):
        exp.files("m").save(source, "w.bin")
    files = exp.directory / "files/m"
    assert sorted(p.name for p in files.iterdir()) == ["first.bin"]
    for leftover in (".w.bin.4242.0.staged", ".w.bin.4242.partial", ".x.json.4242.17.tmp"):
        (files / leftover).write_bytes(b"crash")
    (files / "ours.7.tmp").write_bytes(b"a saved file, not a leftover")  # not hidden: never touched
    again = Experiment(prefix="a/b/late")
    with again.run:
        pass
    assert sorted(p.name for p in files.iterdir()) == ["first.bin", "ours.7.tmp"]


def test_a_source_in_the_temp_directory_is_never_deleted(exp: Experiment) -> None:
    with tempfile.NamedTemporaryFile(delete=False, suffix=".bin") as f:
        f.write(b"temp data")
    source = Path(f.name)
    try:
        exp.files("uploads").save(source, "copy.bin")
        exp.files("uploads").upload(source)
        exp.flush()
        assert source.exists() and source.read_bytes() == b"temp data"
        assert (exp.directory / "files/uploads/copy.bin").read_bytes() == b"temp data"
        assert (exp.directory / f"files/uploads/{source.name}").read_bytes() == b"temp data"
    finally:
        source.unlink()


def test_metadata_records_size_and_sha256(exp: Experiment) -> None:
    payload = b"x" * 1000
    exp.files("blobs").save(payload, "x.bin", description="thousand x", tags=["t"])
    entry = _entries(exp)["blobs/x.bin"]
    assert entry["sizeBytes"] == 1000
    assert entry["checksum"] == hashlib.sha256(payload).hexdigest()
    assert entry["filename"] == "x.bin" and entry["description"] == "thousand x" and entry["tags"] == ["t"]
    assert set(entry) >= {"id", "contentType", "metadata", "uploadedAt", "updatedAt", "deletedAt"}


def test_saving_the_same_path_again_replaces_the_entry(exp: Experiment) -> None:
    exp.files("blobs").save(b"one", "x.bin")
    exp.flush()
    exp.files("blobs").save(b"two!", "x.bin")
    entries = _entries(exp)
    assert len(entries) == 1 and entries["blobs/x.bin"]["sizeBytes"] == 4
    assert (exp.directory / "files/blobs/x.bin").read_bytes() == b"two!"


def test_list_and_download(exp: Experiment, workdir: Path) -> None:
    exp.files("models").save(b"m", "m.bin")
    exp.files("other").save(b"o", "o.bin")
    assert [e["path"] for e in exp.files("models").list()] == ["models/m.bin"]
    assert sorted(e["path"] for e in exp.files.list()) == ["models/m.bin", "other/o.bin"]
    target = exp.files("models").download("m.bin", workdir)
    assert target.read_bytes() == b"m"


def test_upstream_save_helpers(exp: Experiment) -> None:
    scope = exp.files("u")
    scope.save_text("t", to="a.txt")
    scope.save_json({"a": 1}, to="a.json")
    scope.save_blob(b"b", to="a.bin")
    scope.save_torch(nn.Linear(2, 2), to="a.pt")
    scope.save_pkl({"p": 1}, to="a.pkl")
    exp.flush()
    assert sorted(p.name for p in (exp.directory / "files/u").iterdir()) == ["a.bin", "a.json", "a.pkl", "a.pt", "a.txt"]


@pytest.mark.parametrize("name", ["../escape.bin", "/abs.bin", "a/../../x", "nul\x00.bin", "back\\slash", ".hidden"])
def test_row11_traversal_and_odd_file_names_are_rejected(exp: Experiment, name: str) -> None:
    with pytest.raises(ValueError, match="invalid file name"):
        exp.files("models").save(b"x", name)
    assert not any(p.name == "escape.bin" for p in exp.directory.parent.rglob("*"))


@pytest.mark.parametrize("prefix", ["../up", "a/../../b"])
def test_row11_traversal_in_the_file_prefix_is_rejected(exp: Experiment, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid file prefix"):
        exp.files(prefix)


def test_unsupported_objects_and_missing_files_fail_at_the_call(exp: Experiment, workdir: Path) -> None:
    with pytest.raises(TypeError, match="cannot save an object of type object"):
        exp.files("x").save(object(), "o.bin")
    with pytest.raises(FileNotFoundError, match="no such file"):
        exp.files("x").upload(workdir / "missing.bin")
    with pytest.raises(TypeError, match=r"the object to save as JSON\['o'\] has unsupported type object"):
        exp.files("x").save_json({"o": object()}, to="o.json")
    with pytest.raises(ValueError, match="lone surrogate"):
        exp.files("x").save({"name": "caf\udce9"}, "s.json")
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        exp.files("x").save([2**70], "big.json")
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        exp.files("x").save_json(deep, to="deep.json")
    exp.flush()
    assert not (exp.directory / "files/x").exists()  # nothing half-written


def _made_locally() -> object:
    return lambda: 0


class _Unpicklable:
    def __reduce__(self) -> tuple:
        raise TypeError("this one refuses")


@pytest.mark.parametrize("value, problem", [
    (lambda: 0, "Can't pickle"),  # a lambda: pickle raised AttributeError or PicklingError
    (_made_locally(), "Can't pickle local object"),
    (threading.Lock(), "cannot pickle '_thread.lock' object"),
    ((i for i in range(3)), "cannot pickle 'generator' object"),
    ({"ok": 1, "bad": _Unpicklable()}, "this one refuses"),
])
def test_a_value_save_pkl_cannot_pickle_is_a_type_error_naming_the_problem(
        exp: Experiment, value: object, problem: str) -> None:
    with pytest.raises(TypeError, match=f"the object to save as a pickle cannot be pickled: .*{problem}"):
        exp.files("x").save_pkl(value, to="v.pkl")
    exp.files("x").save_pkl({"kept": 1}, to="good.pkl")  # the next save is unaffected
    exp.flush()
    assert sorted(p.name for p in (exp.directory / "files/x").iterdir()) == ["good.pkl"]
    assert exp.stats()["streams"]["files"]["dropped"] == {}


def test_what_torch_save_could_not_pickle_is_refused_at_the_call_not_dropped_later(exp: Experiment) -> None:
    """torch.save ran on the agent: a checkpoint holding a lambda was accepted, then dropped and counted
    as a disk error. The check pickles everything but the tensors, at the call."""
    with pytest.raises(TypeError, match="the object to save with torch.save cannot be pickled: .*Can't pickle"):
        exp.files("x").save_torch({"w": torch.zeros(2), "schedule": lambda step: 0.1}, to="ckpt.pt")
    with pytest.raises(TypeError, match="the object to save with torch.save cannot be pickled"):
        exp.files("x").save({"w": torch.zeros(2), "lock": threading.Lock()}, "ckpt2.pt")
    exp.files("x").save_torch({"w": torch.ones(2), "epoch": 3, "opt": {"lr": 0.1}}, to="fine.pt")
    exp.flush()
    assert torch.load(exp.directory / "files/x/fine.pt", weights_only=True)["epoch"] == 3
    assert sorted(p.name for p in (exp.directory / "files/x").iterdir()) == ["fine.pt"]
    assert exp.stats()["streams"]["files"]["dropped"] == {}


def test_a_numpy_array_of_python_objects_is_refused_at_the_call(exp: Experiment) -> None:
    """.npy holds Python objects only by pickling, which np.save(allow_pickle=False) refused on the agent."""
    with pytest.raises(TypeError, match="numpy array of dtype object .*save_pkl"):
        exp.files("x").save(np.array([{"a": 1}, None], dtype=object), "o.npy")
    exp.flush()
    assert not (exp.directory / "files/x").exists()
    assert exp.stats()["streams"]["files"]["dropped"] == {}


def test_text_with_a_lone_surrogate_is_a_value_error_naming_it(exp: Experiment) -> None:
    with pytest.raises(ValueError, match="the text to save holds the lone surrogate '\\\\udce9' at position 3"):
        exp.files("x").save_text("caf\udce9", to="s.txt")
    with pytest.raises(ValueError, match="the text to save holds the lone surrogate"):
        exp.files("x").save("caf\udce9", "s.txt")


class _GetstateRaises:
    def __getstate__(self) -> dict:
        raise RuntimeError("no pickling me")


class _ReduceRaisesKeyError:
    def __reduce__(self) -> tuple:
        raise KeyError("k")


class _NotImplementedState:
    def __getstate__(self) -> dict:
        raise NotImplementedError("cannot be pickled")


def _deep_list(depth: int) -> list:
    top: list = []
    current = top
    for _ in range(depth):
        current.append([])
        current = current[0]
    return top


def _foreign_failure(case: str) -> object:
    """One object whose pickling runs code that raises (built for its case only: the DataLoader's iterator
    starts a worker process)."""
    import multiprocessing

    return {
        "getstate_runtime_error": lambda: _GetstateRaises(),
        "reduce_key_error": lambda: {"x": _ReduceRaisesKeyError()},
        "not_implemented": lambda: _NotImplementedState(),
        "mp_queue_in_dict": lambda: {"q": multiprocessing.get_context("spawn").Queue()},
        "mp_lock_in_dict": lambda: {"l": multiprocessing.get_context("spawn").Lock()},
        "dataloader_iterator": lambda: {"it": iter(torch.utils.data.DataLoader(list(range(4)), num_workers=1))},
    }[case]()


@pytest.mark.parametrize("case", sorted(["getstate_runtime_error", "reduce_key_error", "not_implemented",
                                          "mp_queue_in_dict", "mp_lock_in_dict", "dataloader_iterator"]))
@pytest.mark.parametrize("saver", ["save_pkl", "save_torch"])
def test_every_failure_to_serialise_at_the_call_is_a_type_error_naming_the_original(
        exp: Experiment, case: str, saver: str) -> None:
    """Pickling runs the object's own code: whatever it raises (RuntimeError, KeyError, NotImplementedError
    from multiprocessing objects and DataLoader iterators) reaches the caller as one TypeError, chained."""
    value = _foreign_failure(case)
    with pytest.raises(TypeError, match="cannot be pickled: [A-Za-z]+Error") as refused:
        getattr(exp.files("x"), saver)(value, to="v.bin")
    assert refused.value.__cause__ is not None
    assert type(refused.value.__cause__).__name__ in str(refused.value)
    # the value is in a cycle (the error's traceback holds its frames): freed here, not by a collection
    # that may run on the agent's thread, where a DataLoader iterator's finaliser waits seconds for its worker
    del refused, value
    gc.collect()
    exp.files("x").save_pkl({"kept": 1}, to="good.pkl")  # the next save is unaffected
    assert exp.flush()
    assert sorted(p.name for p in (exp.directory / "files/x").iterdir()) == ["good.pkl"]
    assert exp.stats()["streams"]["files"]["dropped"] == {}


@pytest.mark.parametrize("saver", ["save_pkl", "save_torch"])
def test_a_structure_too_deep_to_pickle_is_a_type_error(exp: Experiment, saver: str) -> None:
    with pytest.raises(TypeError, match="RecursionError"):
        getattr(exp.files("x"), saver)({"x": _deep_list(100_000)}, to="deep.bin")


_Point = collections.namedtuple("_Point", "x y")


class _TaggedDict(dict):
    def __init__(self, tag: str, *args: object) -> None:
        super().__init__(*args)
        self.tag = tag


def test_save_torch_rebuilds_defaultdicts_namedtuples_and_subclasses_as_they_were(exp: Experiment) -> None:
    """The snapshot rebuilds containers around copied tensors: as their own type, with their state (a
    defaultdict's factory, a namedtuple's fields, a subclass's attributes), the way torch.save keeps them."""
    history = collections.defaultdict(list, a=[torch.ones(1)])
    checkpoint = {
        "history": history,
        "point": _Point(torch.zeros(2), 3),
        "ordered": collections.OrderedDict([("w", torch.ones(2))]),
        "tagged": _TaggedDict("t", {"w": torch.ones(1)}),
        "max": torch.max(torch.tensor([[1.0, 2.0]]), dim=1),
    }
    exp.files("x").save_torch(checkpoint, to="ckpt.pt")
    exp.flush()
    loaded = torch.load(exp.directory / "files/x/ckpt.pt", weights_only=False)
    assert isinstance(loaded["history"], collections.defaultdict) and loaded["history"].default_factory is list
    assert torch.equal(loaded["history"]["a"][0], torch.ones(1))
    assert isinstance(loaded["point"], _Point) and loaded["point"].y == 3 and torch.equal(loaded["point"].x, torch.zeros(2))
    assert type(loaded["ordered"]) is collections.OrderedDict and list(loaded["ordered"]) == ["w"]
    assert type(loaded["tagged"]) is _TaggedDict and loaded["tagged"].tag == "t"
    assert torch.equal(loaded["tagged"]["w"], torch.ones(1))
    assert type(loaded["max"]) is type(checkpoint["max"]) and torch.equal(loaded["max"].values, checkpoint["max"].values)


def test_a_symlink_planted_at_a_temporary_name_is_not_written_through(tmp_path: Path) -> None:
    """Documents and saved files are written to predictable temporary names (pid, thread) before their
    rename: a symlink planted at one by anyone who can write the run directory must not have the write
    go to its target."""
    import os

    from ml_dash._run.snapshots import bytes_writer
    from ml_dash.format.atomic import FileJob, place_file, write_document

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    document = tmp_path / "run/experiment.json"
    document.parent.mkdir()
    os.symlink(victim, document.with_name(f".experiment.json.{os.getpid()}.{threading.get_ident()}.tmp"))
    write_document(document, b'{"status": "RUNNING"}')
    saved = tmp_path / "run/files/model.bin"
    saved.parent.mkdir()
    os.symlink(victim, saved.with_name(f".model.bin.{os.getpid()}.partial"))
    place_file(FileJob(dest=saved, write=bytes_writer(b"weights"), entry={}))
    assert victim.read_text() == "precious\n"
    assert document.read_bytes() == b'{"status": "RUNNING"}' and saved.read_bytes() == b"weights"
    assert sorted(p.name for p in document.parent.iterdir()) == ["experiment.json", "files"]


def test_a_resumed_run_skips_damaged_entries_of_its_files_list_and_keeps_the_rest(workdir: Path) -> None:
    first = Experiment(prefix="a/b/files")
    with first.run:
        first.files("cfg").save_json({"a": 1}, to="a.json")
    listing = first.directory / "files/.files_metadata.json"
    document = read_json(listing)
    document["files"] += [{"name": "no path"}, "files/cfg/a.json", 7, None]  # damaged by hand or a tool
    listing.write_text(json.dumps(document))
    second = Experiment(prefix="a/b/files")
    with second.run:
        second.files("cfg").save_json({"b": 2}, to="b.json")
    assert sorted(e["path"] for e in read_json(listing)["files"]) == ["cfg/a.json", "cfg/b.json"]
