"""System metrics (ml_dash/capture/system.py, gpu.py; docs/capture.md): the metric ``system`` sampled off the
training thread, NVIDIA GPUs read through NVML (a fake NVML module here: no GPU on these machines), absent
GPUs silent, a failing sampler one warning, switched off by ``system_metrics=False`` or an interval of 0."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ml_dash import ConfigurationError, Experiment
from ml_dash.capture.gpu import open_gpus

from .conftest import python_script
from .waiting import wait_for

MACHINE_FIELDS = {"proc_cpu_percent", "proc_rss_mib", "proc_threads", "mem_percent", "mem_used_mib",
                  "mem_available_mib", "cpu_percent", "disk_percent"}
GPU_FIELDS = {"util_percent", "mem_used_mib", "mem_percent", "temp_c", "power_w"}


class FakeNvml:
    """The part of ``pynvml`` that capture calls, for ``devices`` GPUs (the seam: NVML needs a driver)."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self, devices: int = 2, power: bool = True, fail_after: int | None = None) -> None:
        self.devices = devices
        self.power = power
        self.fail_after = fail_after  # readings before every call raises (a driver gone mid-run)
        self.readings = 0
        self.calls: list[tuple[str, int]] = []  # (what, thread id)
        self.shut = False

    def _seen(self, what: str) -> None:
        self.calls.append((what, threading.get_ident()))

    def nvmlInit(self) -> None:
        self._seen("init")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return f"NVIDIA Fake H{h}00"

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.1"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def _read(self) -> None:
        self._seen("read")
        self.readings += 1
        if self.fail_after is not None and self.readings > self.fail_after:
            raise self.NVMLError("GPU is lost")

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        self._read()
        return type("Util", (), {"gpu": 40 + h, "memory": 10})()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return type("Mem", (), {"used": 1024 ** 3, "total": 4 * 1024 ** 3})()

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 60 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        if not self.power:
            raise self.NVMLError_NotSupported("Not Supported")
        return 250_500  # milliwatts


def _system_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics/system/data.jsonl"
    return [json.loads(line)["data"] for line in path.read_text().splitlines()] if path.exists() else []


def _capture_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("ml_dash")]


def test_system_rows_hold_the_machine_the_process_and_each_gpu_read_off_the_training_thread(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml(devices=2)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    exp = Experiment("a/b/system", system_metrics=0.05, console=False, provenance=False)
    with exp.run:
        wait_for(lambda: exp.stats()["capture"]["system"]["rows"] >= 2, "two system rows")
    rows = _system_rows(exp.directory)
    assert len(rows) >= 3  # two or more sampled, and the last one at the end
    assert MACHINE_FIELDS <= set(rows[-1])
    assert {f"gpu{i}_{f}" for i in (0, 1) for f in GPU_FIELDS} <= set(rows[-1])
    assert (rows[-1]["gpu1_util_percent"], rows[-1]["gpu0_temp_c"], rows[-1]["gpu0_power_w"]) == (41.0, 60.0, 250.5)
    assert (rows[-1]["gpu0_mem_used_mib"], rows[-1]["gpu0_mem_percent"]) == (1024.0, 25.0)
    assert 0 < rows[-1]["proc_rss_mib"] < 100_000 and rows[-1]["proc_threads"] >= 2
    assert "disk_read_mib_s" in rows[-1] or "disk_write_mib_s" not in rows[-1]  # rates from the second row on
    # every NVML call but the end's last reading was made on the capture thread, none on this one
    assert threading.get_ident() not in {tid for what, tid in nvml.calls if what == "init"}
    assert nvml.shut
    assert _capture_warnings(caplog) == []


def test_a_gpu_reading_the_board_does_not_support_is_left_out_silently(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(devices=1, power=False))
    exp = Experiment("a/b/nopower", system_metrics=0.05, console=False, provenance=False)
    with exp.run:
        wait_for(lambda: exp.stats()["capture"]["system"]["rows"] >= 1, "a system row")
    last = _system_rows(exp.directory)[-1]
    assert "gpu0_util_percent" in last and "gpu0_power_w" not in last
    assert _capture_warnings(caplog) == []


def test_a_sampler_failure_is_one_warning_the_part_is_left_out_and_the_run_goes_on(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import psutil

    nvml = FakeNvml(devices=1, fail_after=1)  # the driver goes away after the first reading

    def broken_counters(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no /proc/net/dev here")

    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(psutil, "net_io_counters", broken_counters)
    exp = Experiment("a/b/failing", system_metrics=0.05, console=False, provenance=False)
    with exp.run:
        wait_for(lambda: exp.stats()["capture"]["system"]["rows"] >= 4, "four system rows")
        exp.metrics("train").log(loss=1.0)
    rows = _system_rows(exp.directory)
    assert "gpu0_util_percent" in rows[0] and all("gpu0_util_percent" not in r for r in rows[1:])
    assert all(MACHINE_FIELDS <= set(r) and "net_sent_mib_s" not in r for r in rows)
    warnings = _capture_warnings(caplog)
    assert len(warnings) == 1 and "system metrics" in warnings[0], warnings
    assert exp.status.value == "COMPLETED"


@pytest.mark.integration  # the provenance asks `uname -p` (platform.platform())
def test_a_sampler_that_cannot_start_is_one_warning_and_the_provenance_is_still_recorded(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import psutil

    def no_proc(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no /proc here")

    monkeypatch.setattr(psutil, "Process", no_proc)
    monkeypatch.setattr("ml_dash.capture.provenance.git_state", lambda cwd: None)  # no git process in a unit test
    exp = Experiment("a/b/nostart", system_metrics=0.05, console=False)
    with exp.run:
        wait_for(lambda: exp.stats()["capture"]["provenance"]["recorded"], "the provenance")
    assert _system_rows(exp.directory) == [] and exp.status.value == "COMPLETED"
    warnings = _capture_warnings(caplog)
    assert len(warnings) == 1 and "system metrics" in warnings[0] and "no /proc here" in warnings[0], warnings


def test_absent_gpus_cost_nothing_and_say_nothing(workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: the import raises ImportError
    assert open_gpus() is None
    monkeypatch.delitem(sys.modules, "pynvml")
    assert open_gpus() is None  # the real nvidia-ml-py: no driver on this machine
    exp = Experiment("a/b/nogpu", system_metrics=0.05, console=False, provenance=False)
    with exp.run:
        wait_for(lambda: exp.stats()["capture"]["system"]["rows"] >= 1, "a system row")
    assert not any(k.startswith("gpu") for r in _system_rows(exp.directory) for k in r)
    assert _capture_warnings(caplog) == []


def test_nvml_without_devices_is_closed_again() -> None:
    nvml = FakeNvml(devices=0)
    assert open_gpus(nvml) is None and nvml.shut


@pytest.mark.parametrize("switch", ["keyword", "environment"])
def test_system_metrics_off_samples_nothing_and_starts_no_thread(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    if switch == "environment":
        monkeypatch.setenv("ML_DASH_SYSTEM_METRICS_INTERVAL_S", "0")
    exp = Experiment("a/b/off", console=False, provenance=False,
                     **({"system_metrics": False} if switch == "keyword" else {}))
    with exp.run:
        assert not [t for t in threading.enumerate() if t.name == "ml-dash-capture"]
    assert _system_rows(exp.directory) == [] and nvml.calls == []


def test_the_default_interval_is_ten_seconds_and_bad_values_are_clear_errors(
        workdir: Path, capture_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_dash.capture import CaptureSettings

    assert CaptureSettings.resolve().system_interval_s == 10.0
    monkeypatch.setenv("ML_DASH_SYSTEM_METRICS_INTERVAL_S", "2.5")
    assert CaptureSettings.resolve().system_interval_s == 2.5
    assert CaptureSettings.resolve(system_metrics=False).system_interval_s == 0.0
    for bad in ("ten", "-1", "nan", "1e9"):
        monkeypatch.setenv("ML_DASH_SYSTEM_METRICS_INTERVAL_S", bad)
        with pytest.raises(ConfigurationError, match=f"ML_DASH_SYSTEM_METRICS_INTERVAL_S='{bad}' must be"):
            Experiment("a/b/bad")
    monkeypatch.delenv("ML_DASH_SYSTEM_METRICS_INTERVAL_S")
    with pytest.raises(ValueError, match="system_metrics=-3 must be"):
        Experiment("a/b/bad", system_metrics=-3)


def test_system_rows_reach_the_server_and_come_back_with_pull(workdir: Path, capture_on: None, server: Any) -> None:
    """The rows go through the ordinary metric path: uploaded live, stored, pulled."""
    from ml_dash.cli import main

    key = server.key("alice")
    out = python_script(f"""
        import time
        from ml_dash import Experiment
        exp = Experiment("alice/cap/remote", remote={server.url!r}, api_key={key!r}, system_metrics=0.05)
        with exp.run:
            print("console token-REMOTE")
            time.sleep(0.3)
    """, workdir)
    assert out.returncode == 0, out.stderr
    pulled = workdir / "pulled"
    assert main(["pull", "alice/cap/remote", "--remote", server.url, "--api-key", key, "--to", str(pulled)]) == 0
    run = pulled / "alice/cap/remote"
    assert MACHINE_FIELDS <= set(_system_rows(run)[-1])
    logs = [json.loads(line) for line in (run / "logs.jsonl").read_text().splitlines()]
    assert {"message": "console token-REMOTE", "source": "stdout"} in [
        {"message": r["message"], "source": (r.get("metadata") or {}).get("source")} for r in logs]
    provenance = json.loads((run / "experiment.json").read_text())["metadata"]["provenance"]
    assert provenance["command"] == ["-c"] and (run / "files/provenance/requirements.txt").exists()
