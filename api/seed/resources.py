"""Falcon responders: parse the body, call the SupervisorAPI, serialize its answer. No lifecycle logic here."""

from __future__ import annotations

import falcon
import msgspec

from wire.bodies import (HealthResponse, InfoRequest, InfoResponse, JobResponse, LoadAccepted, LoadCompleted,
                         LoadRequest, RegistryResponse, UnloadResponse, answer)
from api.common.gate import ThreadGate
from api.common.media import MAX_JSON_BYTES, read_body, read_limited
from flows.ports import SupervisorAPI
from supervisor.core import LoadTicket
from supervisor.jobs import utc_now
from wire.views import ModelView


class HealthResource:
    """Liveness: the supervisor's I/O loop is running. Needs no API key (orchestrators probe it)."""

    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        alive = self.supervisor.is_alive()
        resp.status = 200 if alive else 503
        resp.media = HealthResponse(success=alive, status="ok" if alive else "supervisor loop stopped")


class ModelInfoResource:
    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.info(InfoRequest())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.info(read_body(req, InfoRequest, optional=True))

    def info(self, request: InfoRequest) -> InfoResponse:
        snapshot = self.supervisor.snapshot
        drop = {} if request.detailed else {"details": None}
        drop |= {} if request.include_metrics else {"metrics": None}
        return InfoResponse(
            success=True, timestamp=utc_now(),
            available_models={m: msgspec.structs.replace(view, **drop) if drop else view
                              for m, view in snapshot.models.items()},
            system_info=self.supervisor.system_info(), model_cache=snapshot.cache,
            nodes=self.supervisor.nodes() or None)


class ModelLoadResource:
    def __init__(self, supervisor: SupervisorAPI, gate: ThreadGate) -> None:
        self.supervisor, self.gate = supervisor, gate

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = read_body(req, LoadRequest)
        if request.async_load:
            ticket = self.supervisor.request_load(request.model_type, request.force_reload, request.timeout)
            resp.media = self.accepted(ticket)
            resp.status = 200 if ticket.completed else 202
            return
        with self.gate.admit():  # a sync load holds its thread for the whole load
            ticket = self.supervisor.request_load(request.model_type, request.force_reload, request.timeout)
            self.supervisor.await_load(ticket)
        resp.media = self.completed(ticket)

    @staticmethod
    def accepted(ticket: LoadTicket) -> LoadAccepted:
        return LoadAccepted(
            success=True, message="Model already loaded" if ticket.completed else "Model loading initiated",
            model_type=ticket.model_type, load_id=ticket.load_id, async_=True,
            estimated_load_time=0 if ticket.completed else ticket.estimated_ms,
            current_status="loaded" if ticket.completed else "loading", load_ids=ticket.load_ids,
        )

    def completed(self, ticket: LoadTicket) -> LoadCompleted:
        snapshot = self.supervisor.snapshot
        if ticket.load_ids is not None:
            models = {m: self.one_completed(snapshot.models[m], load_id) for m, load_id in ticket.load_ids.items()}
            return LoadCompleted(success=True, message="Models loaded successfully", model_type="all",
                                 load_id=ticket.load_id, load_time_ms=max(m.load_time_ms or 0 for m in models.values()),
                                 memory_usage_mb=round(sum(m.memory_usage_mb for m in models.values()), 1),
                                 model_version=self.supervisor.version, status="loaded", models=models)
        return self.one_completed(snapshot.models[ticket.model_type], ticket.load_id)

    @staticmethod
    def one_completed(view: ModelView, load_id: str) -> LoadCompleted:
        return LoadCompleted(success=True, message="Model loaded successfully", model_type=view.model_id,
                             load_id=load_id, load_time_ms=view.load_time_ms, memory_usage_mb=view.memory_usage_mb,
                             model_version=view.version, status=view.status)


class LoadStatusResource:
    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response, load_id: str) -> None:
        resp.media = JobResponse(success=True, job=self.supervisor.job(load_id))


class ModelUnloadResource:
    def __init__(self, supervisor: SupervisorAPI, gate: ThreadGate) -> None:
        self.supervisor, self.gate = supervisor, gate

    def on_delete(self, req: falcon.Request, resp: falcon.Response, model_type: str) -> None:
        with self.gate.admit():  # draining may take up to drain_timeout_s
            view = self.supervisor.unload(model_type)
        resp.media = answer(UnloadResponse, view, message="Model unloaded successfully" if view.was_loaded
                            else "Model was not loaded")


class RegistryResource:
    """`PUT` registers a model from its JSON settings (kind, source, ...) without loading it; `DELETE` forgets a
    registered model that is stopped. Registered models are kept across restarts."""

    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def on_put(self, req: falcon.Request, resp: falcon.Response, model_type: str) -> None:
        replaced = self.supervisor.register(model_type, read_limited(req, MAX_JSON_BYTES, "JSON body") or b"{}")
        resp.status = 200 if replaced else 201
        resp.media = RegistryResponse(success=True, message="Model replaced" if replaced else "Model registered",
                                      model_type=model_type, replaced=replaced)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, model_type: str) -> None:
        self.supervisor.forget(model_type)
        resp.media = RegistryResponse(success=True, message="Model forgotten", model_type=model_type)
