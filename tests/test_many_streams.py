"""More metric streams than open files: the writer keeps a few stream files open (agent/handles.py), every
row lands, the run ends with its true status, and the rest of the process's descriptors stay the user's.

The run of 20,000 metric names (local, then synced to a real server, then read through the server's API
and through ``ml-dash ui``) lives in tests/test_many_streams_server.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml_dash.agent.handles import StreamFiles
from ml_dash.agent.pool import IO_WORKERS, SYNC_THREADS

from .conftest import python_script, read_jsonl

#: Descriptors under a run directory the agent may hold in local mode: the stream files it keeps open,
#: a duplicate of each during a periodic fsync, one per thread that writes a document or reopens a file
#: to fsync it (the disk workers and the sync threads), and the run's lock (agent/handles.py).
DEFAULT_OPEN_FILES = 64
AGENT_DESCRIPTOR_BOUND = 2 * DEFAULT_OPEN_FILES + IO_WORKERS + SYNC_THREADS + 1


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


# -- the open files themselves: real files, a real worker thread --------------------------------------
def _with_files(capacity: int, body: Callable[[StreamFiles, list[int]], Any]) -> Any:
    """Run ``body(files, synced_inodes)`` on an event loop, with a StreamFiles whose fsyncs are recorded."""
    synced: list[int] = []

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        os.fsync(fd)

    async def main() -> Any:
        loop = asyncio.get_running_loop()

        async def run_blocking(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(None, fn, *args)

        async def fan_out(fn: Callable[..., Any], items: Any) -> Any:
            return await run_blocking(fn, items)

        files = StreamFiles(capacity, run_blocking, fan_out, recording_fsync)
        try:
            return await body(files, synced)
        finally:
            await files.close()

    return asyncio.run(main())


def _open_under(directory: Path) -> int:
    """This process's descriptors that point under ``directory``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(f"{directory}/")
    return count


def test_stream_files_keep_at_most_their_capacity_open_and_fsync_evicted_files_at_the_durable_point(
        tmp_path: Path) -> None:
    paths = {f"metrics/m{i}": tmp_path / f"m{i}" / "data.jsonl" for i in range(10)}

    async def body(files: StreamFiles, synced: list[int]) -> None:
        for round_ in range(3):
            for name, path in paths.items():
                await files.open(name, path)
                await files.write(name, [f'{{"index":{round_}}}\n'.encode()])
                assert len(files) <= 3 and _open_under(tmp_path) <= 3
            synced.clear()
            await files.sync()  # the durable point: every file written since the last one, open or not
            assert sorted(synced) == sorted(p.stat().st_ino for p in paths.values())
        assert files.reopens > 0
        synced.clear()
        for name in ("metrics/m0", "metrics/m9"):  # only these two were written since
            await files.open(name, paths[name])
            await files.write(name, [b'{"index":3}\n'])
        await files.sync()
        assert sorted(synced) == sorted(paths[n].stat().st_ino for n in ("metrics/m0", "metrics/m9"))

    _with_files(3, body)
    for path in paths.values():
        assert path.read_bytes().count(b"\n") in (3, 4)


def test_only_the_first_open_ends_a_torn_line_and_a_reopen_after_eviction_adds_nothing(tmp_path: Path) -> None:
    torn = tmp_path / "a" / "data.jsonl"
    torn.parent.mkdir()
    torn.write_bytes(b'{"index":0}\n{"ind')  # a crash's half line

    async def body(files: StreamFiles, synced: list[int]) -> list[int | None]:
        sizes = [await files.open("a", torn)]
        await files.write("a", [b'{"index":1}\n'])
        sizes.append(await files.open("b", tmp_path / "b.jsonl"))  # evicts "a"
        sizes.append(await files.open("a", torn))  # a reopen: no look at the tail, no size
        await files.write("a", [b'{"index":2}\n'])
        return sizes

    sizes = _with_files(1, body)
    assert torn.read_bytes() == b'{"index":0}\n{"ind\n{"index":1}\n{"index":2}\n'
    assert sizes == [len(b'{"index":0}\n{"ind\n'), 0, None]


def test_a_failed_write_is_cut_back_in_a_file_reopened_after_eviction(tmp_path: Path) -> None:
    """The disk-full rule (agent/rundir.py) holds for a stream whose file was closed and opened again."""
    path = tmp_path / "a.jsonl"

    async def body(files: StreamFiles, synced: list[int]) -> None:
        await files.open("a", path)
        await files.write("a", [b'{"index":0}\n'])
        await files.open("b", tmp_path / "b.jsonl")
        await files.open("a", path)
        await files.write("a", [b'{"index":1,"da'])  # as a write the disk cut short leaves it
        await files.truncate("a", len(b'{"index":0}\n'))

    _with_files(1, body)
    assert path.read_bytes() == b'{"index":0}\n'


# -- whole runs in their own processes ------------------------------------------------------------------
def test_3000_metric_names_under_a_1024_descriptor_limit_all_land_and_leave_the_users_descriptors(
        tmp_path: Path) -> None:
    """Issue 14: one open file per metric ran a 1,100-metric run out of descriptors (rows dropped as
    disk_error, experiment.json RUNNING after complete(), the script's own open() failing)."""
    result = python_script("""
        import json, os, resource, threading
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        from ml_dash import Experiment

        NAMES, STEPS = 3000, 3
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        run_dir = str(exp.directory.resolve())

        def ours():
            count = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    count += os.readlink(f"/proc/self/fd/{fd}").startswith(run_dir + "/")
                except OSError:
                    pass
            return count

        peak, stop = [0], threading.Event()

        def watch():
            while not stop.wait(0.01):
                peak[0] = max(peak[0], ours())

        watcher = threading.Thread(target=watch)
        watcher.start()
        for step in range(STEPS):
            for i in range(NAMES):
                exp.metrics(f"layer{i}.grad_norm").log(value=i + step / 10, step=step)
            exp.flush(timeout_s=120)
        own = [open(os.devnull) for _ in range(600)]  # the script's own files, while the run goes on
        for f in own:
            f.close()
        ended = exp.run.complete()
        stop.set()
        watcher.join()
        own = [open(os.devnull) for _ in range(600)]
        streams = exp.stats()["streams"]
        dropped = sum(sum(s["dropped"].values()) for s in streams.values())
        written = sum(s["written"] for name, s in streams.items() if name.startswith("metrics/"))
        print(json.dumps({"ended": ended, "peak": peak[0], "dropped": dropped, "written": written,
                          "own": len(own), "dir": run_dir}))
    """, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["dropped"] == 0 and out["written"] == 3000 * 3
    assert out["own"] == 600
    assert 0 < out["peak"] <= AGENT_DESCRIPTOR_BOUND, out["peak"]
    run_dir = Path(out["dir"])
    assert json.loads((run_dir / "experiment.json").read_text())["status"] == "COMPLETED"
    assert out["ended"] is True  # within the default close deadline
    for i in (0, 1234, 2999):
        rows = read_jsonl(run_dir / f"metrics/layer{i}.grad_norm/data.jsonl")
        assert [(r["index"], r["data"]["step"]) for r in rows] == [(0, 0), (1, 1), (2, 2)]
    lines = sum(p.read_bytes().count(b"\n") for p in run_dir.glob("metrics/*/data.jsonl"))
    assert lines == 3000 * 3
    metadata = json.loads((run_dir / "metrics/layer2999.grad_norm/metadata.json").read_text())
    assert metadata["totalDataPoints"] == 3  # every metric's document written by the end
    check = _cli("check", str(run_dir), cwd=tmp_path)
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr


@pytest.mark.parametrize("new_streams", [0, 5])
def test_a_run_ends_with_its_status_when_the_script_has_taken_every_descriptor(tmp_path: Path,
                                                                               new_streams: int) -> None:
    """The end of a run is robust to EMFILE. The script takes every descriptor left, then logs and ends the
    run: rows go to the files the writer has open, or to files it opens after giving back its own (the
    streams written first then); the documents (experiment.json's status) that could not be written get a
    second chance once the stream files are closed."""
    result = python_script(f"""
        import json, os, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        from ml_dash import Experiment

        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        for i in range(20):
            exp.metrics(f"m{{i}}").log(v=0)
        new = [exp.metrics(f"new{{i}}") for i in range({new_streams})]  # their files are not open yet
        exp.flush()
        hog = []
        try:
            while True:
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for i in range(20):
            exp.metrics(f"m{{i}}").log(v=1)
        for metric in new:
            metric.log(v=1)
        ended = exp.run.complete(timeout_s=60)
        for fd in hog:
            os.close(fd)
        streams = exp.stats()["streams"]
        dropped = {{name: s["dropped"] for name, s in streams.items() if s["dropped"]}}
        print(json.dumps({{"ended": ended, "hogged": len(hog), "dropped": dropped, "dir": str(exp.directory)}}))
    """, tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["hogged"] > 100 and out["dropped"] == {}
    assert result.stderr.count("could not write") <= 1  # one warning, not one per document
    run_dir = tmp_path / out["dir"]
    assert json.loads((run_dir / "experiment.json").read_text())["status"] == "COMPLETED"
    assert out["ended"] is True
    for i in range(20):
        assert [r["data"]["v"] for r in read_jsonl(run_dir / f"metrics/m{i}/data.jsonl")] == [0, 1]
        assert json.loads((run_dir / f"metrics/m{i}/metadata.json").read_text())["totalDataPoints"] == 2
    for i in range(new_streams):
        assert [r["data"]["v"] for r in read_jsonl(run_dir / f"metrics/new{i}/data.jsonl")] == [1]


def test_the_open_files_are_shared_among_the_runs_of_a_process(tmp_path: Path) -> None:
    """ML_DASH_MAX_OPEN_FILES bounds the process, not each run: four runs of 40 metrics at once keep 64
    stream files open in all (160 before), and the last run running gets the whole 64 back."""
    result = python_script("""
        import json, os
        from ml_dash import Experiment

        def under(directory):
            count = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory) + "/")
                except OSError:
                    pass
            return count

        runs = [Experiment(prefix=f"o/p/r{k}") for k in range(4)]
        for exp in runs:
            exp.run.start()
        for step in range(2):
            for exp in runs:
                for i in range(40):
                    exp.metrics(f"m{i}").log(v=i, step=step)
            for exp in runs:
                exp.flush()
        together = under(runs[0].directory.parent.resolve())  # the four runs' locks and stream files
        for exp in runs[:3]:
            exp.run.complete()
        last = runs[3]
        for i in range(40):
            last.metrics(f"m{i}").log(v=i, step=2)
        last.flush()
        alone = under(last.directory.resolve())
        last.run.complete()
        print(json.dumps({"together": together, "alone": alone}))
    """, tmp_path, env={"ML_DASH_FSYNC_INTERVAL_S": "3600"}, timeout=300)  # no periodic fsync's duplicates
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["together"] <= DEFAULT_OPEN_FILES + 4, out  # 16 stream files a run, and each run's lock
    assert out["alone"] == 40 + 1, out  # all 40 of its files open again, and its lock


def test_a_full_disk_with_more_streams_than_open_files_drops_exactly_what_failed(tmp_path: Path) -> None:
    """Fault matrix row 7 with files closed and reopened between writes: each failed chunk is cut back in
    its own file and counted, and each stream's accounting holds."""
    result = python_script("""
        import json, os, resource, signal
        from ml_dash import Experiment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, hard))
        for i in range(3000):
            for s in range(6):
                exp.metrics(f"s{s}").log(step=i, payload="x" * 50)
            if i % 250 == 249:
                exp.flush()
        opened = sum(os.readlink(f"/proc/self/fd/{fd}").endswith("data.jsonl") for fd in os.listdir("/proc/self/fd")
                     if os.path.exists(f"/proc/self/fd/{fd}"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        exp.run.complete()
        print(json.dumps({"streams": exp.stats()["streams"], "dir": str(exp.directory), "opened": opened}))
    """, tmp_path, env={"ML_DASH_MAX_OPEN_FILES": "2", "ML_DASH_FSYNC_INTERVAL_S": "3600"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["opened"] == 2  # the setting, honoured (no periodic fsync's duplicates: fsynced at each flush)
    run_dir = tmp_path / out["dir"]
    for s in range(6):
        counts = out["streams"][f"metrics/s{s}"]
        assert counts["dropped"].get("disk_error", 0) > 0
        assert counts["written"] + counts["dropped"]["disk_error"] == counts["accepted"] == 3000
        rows = read_jsonl(run_dir / f"metrics/s{s}/data.jsonl")  # every line intact
        assert [r["index"] for r in rows] == list(range(counts["written"]))
    assert _cli("check", str(run_dir), cwd=tmp_path).stdout.strip() == "ok"
