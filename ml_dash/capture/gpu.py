"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Absent GPUs cost nothing: without the library, the driver or a device, :func:`open_gpus` returns
None after one debug line, and nothing else of NVML is ever called. NVML is the driver's own
monitoring library (what ``nvidia-smi`` reads): it needs no CUDA context, so reading it never
touches the training's GPU state and is safe beside ``fork()``-ed data-loader workers.

The seam for tests is the module itself: ``open_gpus(nvml=fake)``, or a fake ``pynvml`` in
``sys.modules`` (tests/test_capture_system.py); no GPU is needed to test this path.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger("ml_dash.capture")

_MIB = 1024 * 1024


def open_gpus(nvml: Any = None) -> GpuReader | None:
    """A reader of this machine's NVIDIA GPUs, or None (one debug line) when there are none to read."""
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            logger.debug("ml-dash: no GPU metrics: nvidia-ml-py (pynvml) is not installed")
            return None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no NVIDIA driver here
        logger.debug("ml-dash: no GPU metrics: NVML did not start (%s)", exc)
        return None
    try:
        count = int(nvml.nvmlDeviceGetCount())
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except Exception as exc:  # noqa: BLE001 - any NVML error here: no GPU metrics, one debug line
        logger.debug("ml-dash: no GPU metrics: NVML lists no devices (%s)", exc)
        _shutdown(nvml)
        return None
    if not handles:
        logger.debug("ml-dash: no GPU metrics: no NVIDIA device")
        _shutdown(nvml)
        return None
    return GpuReader(nvml, handles)


class GpuReader:
    """Reads each device's utilisation, memory, temperature and power; a reading a device does not
    support (power on some boards) is left out of its rows from then on, silently."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles
        self._unsupported: set[tuple[int, str]] = set()

    def describe(self) -> dict[str, Any]:
        """The devices' names and the driver's versions, for the run's provenance."""
        nvml = self._nvml
        info: dict[str, Any] = {"gpus": [_text(nvml.nvmlDeviceGetName(h)) for h in self._handles]}
        for key, call in (("nvidia_driver", "nvmlSystemGetDriverVersion"),
                          ("cuda_driver", "nvmlSystemGetCudaDriverVersion")):
            try:
                value = getattr(nvml, call)()
            except Exception:  # noqa: BLE001, S112 - a driver without this call: left out
                continue
            info[key] = _cuda_version(value) if key == "cuda_driver" else _text(value)
        return info

    def sample(self) -> dict[str, float]:
        """One reading of every device: ``gpu<i>_util_percent``, ``gpu<i>_mem_used_mib``,
        ``gpu<i>_mem_percent``, ``gpu<i>_temp_c``, ``gpu<i>_power_w``."""
        fields: dict[str, float] = {}
        for index, handle in enumerate(self._handles):
            for name, read in self._readings():
                if (index, name) in self._unsupported:
                    continue
                try:
                    fields.update(read(handle, f"gpu{index}_"))
                except Exception as exc:
                    if not _is_not_supported(self._nvml, exc):
                        raise
                    self._unsupported.add((index, name))
        return fields

    def close(self) -> None:
        _shutdown(self._nvml)

    def _readings(self) -> list[tuple[str, Any]]:
        nvml = self._nvml

        def utilisation(h: Any, p: str) -> dict[str, float]:
            return {p + "util_percent": float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)}

        def memory(h: Any, p: str) -> dict[str, float]:
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            return {p + "mem_used_mib": mem.used / _MIB, p + "mem_percent": 100.0 * mem.used / mem.total if mem.total else 0.0}

        def temperature(h: Any, p: str) -> dict[str, float]:
            return {p + "temp_c": float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))}

        def power(h: Any, p: str) -> dict[str, float]:
            return {p + "power_w": nvml.nvmlDeviceGetPowerUsage(h) / 1000.0}  # NVML reports milliwatts

        return [("util", utilisation), ("memory", memory), ("temperature", temperature), ("power", power)]


def _is_not_supported(nvml: Any, exc: Exception) -> bool:
    not_supported = getattr(nvml, "NVMLError_NotSupported", None)
    return isinstance(not_supported, type) and isinstance(exc, not_supported)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cuda_version(value: Any) -> str:
    """NVML's CUDA version as an int (12040) in the usual spelling ("12.4")."""
    if isinstance(value, int):
        return f"{value // 1000}.{value % 1000 // 10}"
    return _text(value)


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        logger.debug("ml-dash: NVML shutdown failed", exc_info=True)
