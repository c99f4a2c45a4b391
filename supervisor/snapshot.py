"""The immutable snapshot the arbiter publishes after each change, and the views built from it.

`/model/info`, `/metrics`, the probes and the load responses read the latest snapshot: no lock, no process
read on the request path. Memory figures in it were read off the loop, at most a second ago.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from importlib.metadata import version

import msgspec
import psutil

from supervisor import cgroup
from supervisor.jobs import LoadGroup, LoadJob
from supervisor.replica import Model, Replica
from supervisor.states import ModelStatus
from wire.views import CacheInfo, JobView, ModelDetails, ModelMetrics, ModelView, ReplicaView, SystemInfo

GB = 1024 ** 3


class Snapshot(msgspec.Struct, frozen=True):
    models: dict[str, ModelView]     # with details and metrics; readers drop what they were not asked for
    jobs: dict[str, JobView]
    cache: CacheInfo
    closing: bool
    loop_alive_at: float


def replica_view(replica: Replica, shared_weights_mb: float | None) -> ReplicaView:
    return ReplicaView(pid=replica.pid or None, state=replica.state, in_flight=len(replica.running),
                       memory_usage_mb=round(replica.rss_mb, 1), memory_unique_mb=round(replica.unique_mb, 1),
                       open_streams=len(replica.streams), memory_shared_weights_mb=shared_weights_mb,
                       gpu_memory_mb=optional_round(replica.gpu_mb))


def optional_round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def model_view(model: Model, version_: str, open_streams: int) -> ModelView:
    serving = [r for r in model.replicas if r.ready and not r.stopping]  # draining ones hold memory too
    shown = model.serving() or model.live()  # the seed's pid: the set dispatch uses, else the loading one
    entry, usage = model.entry, model.usage
    loaded = model.status is ModelStatus.LOADED
    shared = round(model.weights_mb, 1) if model.holds_weights() else None
    gpu = [r.gpu_mb for r in serving if r.gpu_mb is not None]
    return ModelView(
        model_id=entry.model_id, kind=entry.kind.name, display_name=entry.display_name, description=entry.description,
        version=version_, provider=entry.provider, language=entry.language, capabilities=list(entry.capabilities),
        loaded=loaded, loading=model.status is ModelStatus.LOADING, status=model.status.value,
        pid=shown[0].pid or None if shown else None,
        memory_usage_mb=round(sum(r.rss_mb for r in serving), 1),
        load_time_ms=round(model.load_time_ms, 1) if model.load_time_ms is not None else None,
        last_used=usage.last_used, total_requests=usage.total, success_rate=usage.success_rate(),
        restarts=model.restarts, last_error=model.last_error, required=model.config.required,
        engine=model.engine or model.config.engine, quantize=model.quantize or model.config.quantize,
        replicas=[replica_view(r, shared) for r in model.replicas],
        memory_shared_weights_mb=shared, warm_mb=optional_round(model.warm_mb()),
        gpu_memory_mb=round(sum(gpu), 1) if gpu else None, live_sessions=usage.live_sessions,
        details=ModelDetails(
            source=model.config.source, resolved_source=model.resolved_source, device=model.config.device,
            threads=model.config.thread_count,
            memory_unique_mb=round(sum(r.unique_mb for r in serving), 1) if loaded else None,
            load_phases_ms=model.timings, loader=model.loader, loader_note=model.loader_note,
            weights_file=next(iter(model.weights_files), None), weights_files=model.weights_files,
            engine_note=model.engine_note, config=model.config,
            open_streams=open_streams),
        metrics=ModelMetrics(
            loads=model.loads, restarts=model.restarts, cache_hits=model.cache_hits, cold_starts=usage.cold_starts,
            idle_unloads=usage.idle_unloads, evictions=model.evictions,
            in_flight=sum(len(r.running) for r in model.replicas), queued=len(model.queue),
            requests_by_outcome=dict(usage.outcomes), latency=usage.percentiles(), batches=usage.batches,
            mean_batch=round(usage.batched_items / usage.batches, 2) if usage.batches else None,
            cpu_s=round(usage.cpu_ms / 1000, 3), audio_s=round(usage.audio_ms / 1000, 3),
            cpu_per_audio_s=usage.cpu_per_audio_s()),
    )


def build_snapshot(arbiter, jobs: dict[str, JobView]) -> Snapshot:
    models = arbiter.models
    loads = sum(m.loads for m in models.values())
    hits = sum(m.cache_hits for m in models.values())
    cache = CacheInfo(cache_enabled=True, cache_directory=str(arbiter.cache_dir),
                      cache_size_mb=round(arbiter.cache_size_mb, 1),
                      cache_hit_rate=round(hits / loads, 3) if loads else 0.0)
    return Snapshot(models={m: model_view(model, arbiter.version, arbiter.streams.open_count(m))
                            for m, model in models.items()},
                    jobs=jobs, cache=cache, closing=arbiter.closing, loop_alive_at=time.monotonic())


def job_view(job: LoadJob | LoadGroup) -> JobView:
    if isinstance(job, LoadGroup):
        started = [j.started_at for j in job.jobs if j.started_at]
        finished = [j.finished_at for j in job.jobs if j.finished_at]
        failed = [j for j in job.jobs if j.error]
        return JobView(
            load_id=job.load_id, model_type="all", status=job.status.value,
            phase="; ".join(f"{j.model_id}: {j.phase}" for j in job.jobs), created_at=job.created_at,
            started_at=min(started) if started else None,
            finished_at=max(finished) if len(finished) == len(job.jobs) else None,
            elapsed_ms=round(max(j.elapsed_ms() for j in job.jobs), 1),
            error="; ".join(f"{j.model_id}: {j.error}" for j in failed) or None,
            error_code=failed[0].error_code if failed else None,
            details=failed[0].details if failed else None,
            jobs={j.model_id: j.load_id for j in job.jobs},
        )
    return JobView(
        load_id=job.load_id, model_type=job.model_id, status=job.status.value, phase=job.phase,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        elapsed_ms=round(job.elapsed_ms(), 1), error=job.error, error_code=job.error_code, details=job.details,
    )


@functools.cache
def framework() -> str:
    """Read once: package metadata parsing costs ~1 ms, too much for every /model/info."""
    return f"Falcon {version('falcon')} (waitress {version('waitress')})"


def system_info(started_at: float) -> SystemInfo:
    memory = cgroup.memory_now()
    return SystemInfo(
        total_memory_gb=round(memory.total / GB, 2), available_memory_gb=round(memory.available / GB, 2),
        cpu_cores=psutil.cpu_count() or os.cpu_count() or 1, python_version=platform.python_version(),
        framework=framework(), uptime_hours=round((time.time() - started_at) / 3600, 4),
        memory_limit=memory.limited_by)


def directory_size_mb(root) -> float:
    """Walked off the loop (it may hold many files)."""
    total = 0
    for path, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_size
            except OSError:
                pass
    return total / (1024 * 1024)
