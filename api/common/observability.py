"""Probes, Prometheus metrics and a one-line access log with a request id (also returned as X-Request-Id)."""

from __future__ import annotations

import logging
import re
import time
import uuid

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wire.bodies import ModelReadyResponse, ReadyResponse
from api.common.readiness import check_ready
from flows.ports import SupervisorAPI
from wire.errors import ErrorCode, SupervisorError, shown

log = logging.getLogger("funasr_supervisor.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestLogMiddleware:
    """Every request gets an id (the client's X-Request-Id when sane, else a new one) and one log line."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-Id") or ""
        req.context.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        req.context.began = time.monotonic()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        request_id = getattr(req.context, "request_id", None) or uuid.uuid4().hex[:16]
        resp.set_header("X-Request-Id", request_id)
        elapsed_ms = (time.monotonic() - getattr(req.context, "began", time.monotonic())) * 1000
        log.info("%s %s -> %d in %.1f ms [request %s]", req.method, shown(req.path, 120), resp.status_code,
                 elapsed_ms, request_id)


class ReadyResource:
    """Readiness: every `required` model is loaded (orchestrators route traffic only then)."""

    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_ready(self.supervisor, "Required models are not loaded")
        resp.media = ReadyResponse(success=True, ready=True)


class ModelReadyResource:
    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response, model_type: str) -> None:
        model_id = self.supervisor.resolve(model_type, allow_all=False)[0]
        status = self.supervisor.view(model_id).status
        if status != "loaded":
            raise SupervisorError(ErrorCode.MODEL_NOT_READY, f"Model {model_id} is not ready",
                                  f"its status is {status}", model_type=model_id, status=status, retry_after_s=5)
        resp.media = ModelReadyResponse(success=True, model_type=model_id, ready=True, status=status)


class MetricsResource:
    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.registry = supervisor.metrics.registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)
