"""System metrics: one row of the metric ``system`` per interval, read with psutil (and NVML).

Fields (absent when this machine cannot tell; rates are per second over the last interval):

* the process: ``proc_cpu_percent`` (100 = one core), ``proc_rss_mib``, ``proc_threads``;
* the machine: ``cpu_percent`` (all cores, 0-100), ``mem_percent``, ``mem_used_mib``,
  ``mem_available_mib``, ``disk_percent`` (the run directory's file system),
  ``disk_read_mib_s``, ``disk_write_mib_s``, ``net_sent_mib_s``, ``net_recv_mib_s``;
* per NVIDIA GPU ``i`` (gpu.py): ``gpu<i>_util_percent``, ``gpu<i>_mem_used_mib``,
  ``gpu<i>_mem_percent``, ``gpu<i>_temp_c``, ``gpu<i>_power_w``.

A part that fails (a container without disk counters, a broken driver) is left out from then on and
said once, in one warning for the whole sampler: a sampler never crashes a training script.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .gpu import GpuReader

logger = logging.getLogger("ml_dash.capture")

_MIB = 1024 * 1024

#: The metric stream the rows go to.
SYSTEM_METRIC = "system"


class SystemSampler:
    """Samples the machine and this process; ``sample()`` returns one row's fields."""

    def __init__(self, psutil: Any, gpus: GpuReader | None, disk_path: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._psutil = psutil
        self._gpus = gpus
        self._disk_path = disk_path
        self._clock = clock
        self._process = psutil.Process(os.getpid())
        self._failed: set[str] = set()
        self.warned = False
        self._last: dict[str, tuple[float, Any]] = {}
        # CPU percentages and I/O rates are over the time since the previous reading: these set the start
        self._run_parts({"process": lambda: self._process.cpu_percent(None), "cpu": lambda: psutil.cpu_percent(None),
                         "disk": lambda: self._counters("disk", psutil.disk_io_counters),
                         "network": lambda: self._counters("net", psutil.net_io_counters)})

    def sample(self) -> dict[str, float]:
        return self._run_parts({"process": self._process_part, "memory": self._memory_part, "cpu": self._cpu_part,
                                "disk": self._disk_part, "network": self._network_part, "gpu": self._gpu_part})

    def _run_parts(self, parts: dict[str, Callable[[], Any]]) -> dict[str, float]:
        fields: dict[str, float] = {}
        for name, part in parts.items():
            if name in self._failed:
                continue
            try:
                got = part()
                if isinstance(got, dict):
                    fields.update(got)
            except Exception as exc:  # noqa: BLE001 - that part is left out from now on, said once
                self._failed.add(name)
                self._warn(name, exc)
        return fields

    def close(self) -> None:
        if self._gpus is not None:
            self._gpus.close()

    def _process_part(self) -> dict[str, float]:
        proc = self._process
        with proc.oneshot():
            return {"proc_cpu_percent": proc.cpu_percent(None), "proc_rss_mib": proc.memory_info().rss / _MIB,
                    "proc_threads": float(proc.num_threads())}

    def _memory_part(self) -> dict[str, float]:
        mem = self._psutil.virtual_memory()
        return {"mem_percent": mem.percent, "mem_used_mib": mem.used / _MIB, "mem_available_mib": mem.available / _MIB}

    def _cpu_part(self) -> dict[str, float]:
        return {"cpu_percent": self._psutil.cpu_percent(None)}

    def _disk_part(self) -> dict[str, float]:
        fields = {"disk_percent": self._psutil.disk_usage(str(self._disk_path)).percent}
        rates = self._rates("disk", self._psutil.disk_io_counters, ("read_bytes", "write_bytes"))
        if rates is not None:
            fields["disk_read_mib_s"], fields["disk_write_mib_s"] = rates
        return fields

    def _network_part(self) -> dict[str, float]:
        rates = self._rates("net", self._psutil.net_io_counters, ("bytes_sent", "bytes_recv"))
        return {} if rates is None else {"net_sent_mib_s": rates[0], "net_recv_mib_s": rates[1]}

    def _gpu_part(self) -> dict[str, float]:
        return self._gpus.sample() if self._gpus is not None else {}

    def _counters(self, key: str, read: Callable[[], Any]) -> Any:
        counters = read()  # None where the machine has none (some containers): the rates are left out
        previous = self._last.get(key)
        if counters is not None:
            self._last[key] = (self._clock(), counters)
        return previous, counters

    def _rates(self, key: str, read: Callable[[], Any], names: tuple[str, str]) -> tuple[float, float] | None:
        previous, counters = self._counters(key, read)
        if previous is None or counters is None:
            return None
        elapsed = self._last[key][0] - previous[0]
        if elapsed <= 0:
            return None
        # max(0, ...): counters wrap or reset (a network interface going away)
        first, second = (max(0, getattr(counters, n) - getattr(previous[1], n)) / _MIB / elapsed for n in names)
        return first, second

    def _warn(self, part: str, exc: Exception) -> None:
        if self.warned:
            logger.debug("ml-dash: system metrics: the %s part failed too (%s)", part, exc)
            return
        self.warned = True
        logger.warning("ml-dash: system metrics: reading the %s failed (%s: %s); it is left out of the `system` rows "
                       "from now on (the run goes on)", part, type(exc).__name__, exc)


def open_sampler(disk_path: Path, gpus: GpuReader | None) -> SystemSampler | None:
    """A sampler of this machine, or None (one warning) when psutil is missing."""
    try:
        import psutil
    except ImportError:
        logger.warning("ml-dash: no system metrics: psutil is not installed (pip install psutil)")
        return None
    return SystemSampler(psutil, gpus, disk_path)
