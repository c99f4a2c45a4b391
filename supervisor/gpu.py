"""Per-process GPU memory from NVML, where a GPU is present.

NVML (`nvidia-ml-py`) reports each process's device memory, which no /proc file shows. On a machine without
the NVIDIA driver every call answers None, and the figure is left out of `/model/info` rather than shown as 0.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

MB = 1024 * 1024


@functools.cache
def _nvml():
    """The initialised pynvml module, or None without the library or a GPU (decided once per process)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
    except Exception as exc:  # no driver, no library, no device: a CPU machine
        log.debug("no NVML: %s", exc)
        return None
    return pynvml


def available() -> bool:
    return _nvml() is not None


def process_memory_mb() -> dict[int, float] | None:
    """{pid: device MB summed over every GPU} for processes holding GPU memory; None without NVML."""
    nvml = _nvml()
    if nvml is None:
        return None
    used: dict[int, float] = {}
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used[process.pid] = used.get(process.pid, 0.0) + (process.usedGpuMemory or 0) / MB
    except nvml.NVMLError as exc:
        log.warning("NVML: %s", exc)
        return None
    return used


def device_used_mb() -> float | None:
    """Used memory of every GPU together (the figure an unload must bring back to where it was)."""
    nvml = _nvml()
    if nvml is None:
        return None
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    return sum(nvml.nvmlDeviceGetMemoryInfo(handle).used for handle in handles) / MB
