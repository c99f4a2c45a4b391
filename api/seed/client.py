"""A small typed client for the server (the reference's ModelManager, shaped for scripts); the CLI uses it.

Standard library HTTP plus msgspec: responses decode into the same Structs the server encodes, so a field
renamed on one side fails loudly on the other.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Callable, TypeVar

import msgspec

from wire.bodies import (InfoResponse, JobResponse, LoadAccepted, LoadCompleted, ModelReadyResponse, ReadyResponse,
                         UnloadResponse)
from wire.views import JobView

T = TypeVar("T")
FINISHED = {"completed", "failed", "cancelled"}


class ApiError(Exception):
    """The server answered with the error envelope (or not at all)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(f"{body.get('error_code', status)}: {body.get('error', '')} — {body.get('details', '')}")
        self.status = status
        self.body = body
        self.code = body.get("error_code", "UNREACHABLE" if status == 0 else "HTTP_ERROR")


class ModelManagerClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout_s: float = 330.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict | None, result_type: type[T]) -> T:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return msgspec.json.decode(response.read(), type=result_type)
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, json.loads(exc.read() or b"{}")) from None
        except urllib.error.URLError as exc:
            raise ApiError(0, {"error": f"cannot reach {self.base_url}", "details": str(exc.reason)}) from None

    def info(self, detailed: bool = False) -> InfoResponse:
        return self._call("POST", "/model/info", {"detailed": detailed, "include_metrics": detailed}, InfoResponse)

    def load(self, model_type: str, sync: bool = False, force: bool = False,
             timeout_s: float = 300.0) -> LoadAccepted | LoadCompleted:
        body = {"model_type": model_type, "async_load": not sync, "force_reload": force, "timeout": timeout_s}
        if sync:
            return self._call("POST", "/model/load", body, LoadCompleted)
        return self._call("POST", "/model/load", body, LoadAccepted)

    def job(self, load_id: str) -> JobView:
        return self._call("GET", f"/model/load/{load_id}", None, JobResponse).job

    def wait_for_load(self, load_id: str, poll_s: float = 0.25,
                      on_progress: Callable[[JobView], None] | None = None) -> JobView:
        """Poll GET /model/load/{id} until the job ends; `on_progress` sees each state on the way."""
        while True:
            job = self.job(load_id)
            if on_progress:
                on_progress(job)
            if job.status in FINISHED:
                return job
            time.sleep(poll_s)

    def unload(self, model_type: str) -> UnloadResponse:
        return self._call("DELETE", f"/model/unload/{model_type}", None, UnloadResponse)

    def ready(self, model_type: str | None = None) -> ReadyResponse | ModelReadyResponse:
        if model_type:
            return self._call("GET", f"/model/{model_type}/ready", None, ModelReadyResponse)
        return self._call("GET", "/readyz", None, ReadyResponse)
