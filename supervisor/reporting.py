"""Build the typed views `/model/info` and `/model/load/{id}` show, from slots, jobs and the machine."""

from __future__ import annotations

import functools
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import msgspec
import psutil

from supervisor.jobs import LoadGroup, LoadJob
from supervisor.memory import rss_mb
from supervisor.slot import ModelSlot
from supervisor.states import ModelStatus
from supervisor.views import JobView, ModelDetails, ModelMetrics, ModelView

GB = 1024 ** 3


class SystemInfo(msgspec.Struct, frozen=True):
    total_memory_gb: float
    available_memory_gb: float
    cpu_cores: int
    python_version: str
    framework: str
    uptime_hours: float


class CacheInfo(msgspec.Struct, frozen=True):
    cache_enabled: bool
    cache_directory: str
    cache_size_mb: float
    cache_hit_rate: float


def model_view(slot: ModelSlot, version: str, detailed: bool = False, include_metrics: bool = False,
               open_streams: int = 0) -> ModelView:
    """One model's current state; cheap by default (RSS only), Private_Dirty only when `detailed`."""
    with slot.lock:
        worker = slot.candidate if slot.status is ModelStatus.LOADING and slot.candidate else slot.worker
        serving = slot.worker if slot.status is ModelStatus.LOADED else None
        entry = slot.entry
        return ModelView(
            model_id=entry.model_id, display_name=entry.display_name, description=entry.description,
            version=version, provider=entry.provider, language=entry.language,
            capabilities=list(entry.capabilities),
            loaded=slot.status is ModelStatus.LOADED, loading=slot.status is ModelStatus.LOADING,
            status=slot.status.value, pid=worker.pid if worker else None,
            memory_usage_mb=round(rss_mb(serving.pid), 1) if serving else 0.0,
            load_time_ms=round(slot.load_time_ms, 1) if slot.load_time_ms is not None else None,
            last_used=slot.usage.last_used, total_requests=slot.usage.total,
            success_rate=slot.usage.success_rate(), restarts=slot.restarts, last_error=slot.last_error,
            required=slot.config.required,
            details=details(slot, open_streams) if detailed else None,
            metrics=metrics(slot) if include_metrics else None,
        )


def details(slot: ModelSlot, open_streams: int) -> ModelDetails:
    return ModelDetails(
        source=slot.config.source, resolved_source=slot.resolved_source, device=slot.config.device,
        threads=slot.config.threads,
        memory_unique_mb=round(slot.unique_memory_mb(), 1) if slot.status is ModelStatus.LOADED else None,
        load_phases_ms=slot.timings, config=slot.config, open_streams=open_streams,
    )


def metrics(slot: ModelSlot) -> ModelMetrics:
    usage = slot.usage
    return ModelMetrics(loads=slot.loads, restarts=slot.restarts, cache_hits=slot.cache_hits,
                        cold_starts=usage.cold_starts, idle_unloads=usage.idle_unloads, in_flight=usage.in_flight,
                        requests_by_outcome=dict(usage.outcomes), latency=usage.percentiles())


def job_view(job: LoadJob | LoadGroup) -> JobView:
    if isinstance(job, LoadGroup):
        started = [j.started_at for j in job.jobs if j.started_at]
        finished = [j.finished_at for j in job.jobs if j.finished_at]
        failed = [j for j in job.jobs if j.error]
        done = len(finished) == len(job.jobs)
        return JobView(
            load_id=job.load_id, model_type="all", status=job.status.value,
            phase="; ".join(f"{j.model_id}: {j.phase}" for j in job.jobs), created_at=job.created_at,
            started_at=min(started) if started else None, finished_at=max(finished) if done else None,
            elapsed_ms=round(max(j.elapsed_ms() for j in job.jobs), 1),
            error="; ".join(f"{j.model_id}: {j.error}" for j in failed) or None,
            error_code=failed[0].error_code if failed else None,
            details=failed[0].details if failed else None,
            jobs={j.model_id: j.load_id for j in job.jobs},
        )
    return JobView(
        load_id=job.load_id, model_type=job.model_id, status=job.status.value, phase=job.phase,
        created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at, elapsed_ms=round(job.elapsed_ms(), 1),
        error=job.error, error_code=job.error_code, details=job.details,
    )


@functools.cache
def framework() -> str:
    """Read once: package metadata parsing costs ~1 ms, too much for every /model/info."""
    return f"Falcon {version('falcon')} (waitress {version('waitress')})"


def system_info(started_at: float) -> SystemInfo:
    memory = psutil.virtual_memory()
    return SystemInfo(
        total_memory_gb=round(memory.total / GB, 2), available_memory_gb=round(memory.available / GB, 2),
        cpu_cores=psutil.cpu_count() or os.cpu_count() or 1, python_version=platform.python_version(),
        framework=framework(), uptime_hours=round((time.time() - started_at) / 3600, 4),
    )


def directory_size_mb(root: Path) -> float:
    total = 0
    for path, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_size
            except OSError:
                pass
    return total / (1024 * 1024)


def cache_info(cache_dir: Path, slots: list[ModelSlot]) -> CacheInfo:
    """The model cache is real: its directory and size on disk; a hit is a load whose files were already there."""
    loads = sum(slot.loads for slot in slots)
    hits = sum(slot.cache_hits for slot in slots)
    return CacheInfo(cache_enabled=True, cache_directory=str(cache_dir),
                     cache_size_mb=round(directory_size_mb(cache_dir), 1),
                     cache_hit_rate=round(hits / loads, 3) if loads else 0.0)
