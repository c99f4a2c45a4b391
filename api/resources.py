"""Falcon responders: parse the body, call the Supervisor, serialize its answer. No lifecycle logic here."""

from __future__ import annotations

import falcon

from api.bodies import (HealthResponse, InfoRequest, InfoResponse, JobResponse, LoadAccepted, LoadCompleted, LoadRequest,
                        UnloadResponse)
from api.media import read_body
from supervisor.core import Supervisor
from supervisor.jobs import JobStatus, LoadGroup, LoadJob, utc_now
from supervisor.reporting import cache_info, job_view, model_view, system_info


class HealthResource:
    """Liveness: the supervisor's I/O loop is running. Needs no API key (orchestrators probe it)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        alive = self.supervisor.is_alive()
        resp.status = 200 if alive else 503
        resp.media = HealthResponse(success=alive, status="ok" if alive else "supervisor loop stopped")


class ModelInfoResource:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.info(InfoRequest())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.info(read_body(req, InfoRequest, optional=True))

    def info(self, request: InfoRequest) -> InfoResponse:
        sup = self.supervisor
        return InfoResponse(
            success=True, timestamp=utc_now(),
            available_models={m: model_view(slot, sup.version, request.detailed, request.include_metrics,
                                            sup.inference.streams.open_count(m))
                              for m, slot in sup.slots.items()},
            system_info=system_info(sup.started_at),
            model_cache=cache_info(sup.cache_dir, list(sup.slots.values())),
        )


class ModelLoadResource:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = read_body(req, LoadRequest)
        job = self.supervisor.request_load(request.model_type, request.force_reload, request.timeout)
        if request.async_load:
            resp.media = self.accepted(job)
            resp.status = 200 if job.status is JobStatus.COMPLETED else 202
            return
        self.supervisor.await_load(job)
        resp.media = self.completed(job)

    def accepted(self, job: LoadJob | LoadGroup) -> LoadAccepted:
        jobs = job.jobs if isinstance(job, LoadGroup) else [job]
        done = job.status is JobStatus.COMPLETED
        return LoadAccepted(
            success=True, message="Model already loaded" if done else "Model loading initiated",
            model_type="all" if isinstance(job, LoadGroup) else job.model_id, load_id=job.load_id, async_=True,
            estimated_load_time=0 if done else max(self.supervisor.estimated_load_ms(j.model_id) for j in jobs),
            current_status="loaded" if done else "loading",
            load_ids={j.model_id: j.load_id for j in jobs} if isinstance(job, LoadGroup) else None,
        )

    def completed(self, job: LoadJob | LoadGroup) -> LoadCompleted:
        if isinstance(job, LoadGroup):
            models = {j.model_id: self.completed(j) for j in job.jobs}
            return LoadCompleted(success=True, message="Models loaded successfully", model_type="all",
                                 load_id=job.load_id, load_time_ms=max(m.load_time_ms or 0 for m in models.values()),
                                 memory_usage_mb=round(sum(m.memory_usage_mb for m in models.values()), 1),
                                 model_version=self.supervisor.version, status="loaded", models=models)
        view = model_view(self.supervisor.slots[job.model_id], self.supervisor.version)
        return LoadCompleted(success=True, message="Model loaded successfully", model_type=job.model_id,
                             load_id=job.load_id, load_time_ms=view.load_time_ms,
                             memory_usage_mb=view.memory_usage_mb, model_version=view.version, status=view.status)


class LoadStatusResource:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response, load_id: str) -> None:
        resp.media = JobResponse(success=True, job=job_view(self.supervisor.job(load_id)))


class ModelUnloadResource:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def on_delete(self, req: falcon.Request, resp: falcon.Response, model_type: str) -> None:
        view = self.supervisor.unload(model_type)
        resp.media = UnloadResponse(
            success=True, message="Model unloaded successfully" if view.was_loaded else "Model was not loaded",
            model_type=view.model_type, memory_freed_mb=view.memory_freed_mb, unload_time_ms=view.unload_time_ms,
            models_remaining=view.models_remaining,
        )
