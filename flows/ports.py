"""The facade the flows and the protocol adapters use: `supervisor.core.Supervisor` satisfies it, and so does the
tests' fake (`tests/fake_facade.py`), so every flow and adapter can be tested without model processes."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from supervisor.config import ServerSettings
from supervisor.core import LoadTicket
from supervisor.metrics import SupervisorMetrics
from supervisor.orders import Order
from supervisor.snapshot import Snapshot
from wire.views import JobView, ModelView, UnloadView


class SupervisorAPI(Protocol):
    settings: ServerSettings
    started_at: float
    version: str
    metrics: SupervisorMetrics

    @property
    def snapshot(self) -> Snapshot: ...

    def view(self, model_id: str) -> ModelView: ...

    def is_alive(self) -> bool: ...

    def missing_required(self) -> list[str]: ...

    def resolve(self, model_type: str, allow_all: bool = True) -> list[str]: ...

    def job(self, load_id: str) -> JobView: ...

    def model_for(self, kinds: tuple[str, ...], requested: str | None = None) -> str: ...

    def has_model(self, kind: str) -> bool: ...

    def request_load(self, model_type: str, force_reload: bool = False, timeout_s: float = 300.0) -> LoadTicket: ...

    def await_load(self, ticket: LoadTicket) -> None: ...

    def unload(self, model_type: str) -> UnloadView: ...

    def register(self, name: str, config_json: str | bytes) -> bool: ...

    def forget(self, name: str) -> None: ...

    def submit(self, *orders: Order) -> list[Future]: ...

    def where(self) -> str: ...
