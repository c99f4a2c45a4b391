"""The node agent: a Ray actor pinned to one node, running the existing supervisor there unchanged (a process per
replica, exact memory return, mapped weights shared on that node).

Its methods run on the actor's threads and block until the supervisor answers. They return plain values (the
snapshot, a ticket's outcome, an order's result); a refusal comes back as an `AgentRefusal`, so the gateway
raises the same `SupervisorError` the supervisor raised, whatever Ray does to exceptions on the way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import msgspec

from supervisor.config import Config
from supervisor.core import Capacity, Supervisor
from supervisor.orders import Order
from wire.errors import SupervisorError, error_code
from wire.views import SystemInfo, UnloadView

log = logging.getLogger(__name__)

ORDER_BACKSTOP_S = 3600.0   # the node's arbiter bounds every order; this only frees the actor thread


class AgentRefusal(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: str
    context: dict

    @classmethod
    def of(cls, exc: SupervisorError) -> AgentRefusal:
        return cls(exc.code.value, exc.message, exc.details, exc.context)

    def error(self) -> SupervisorError:
        return SupervisorError(error_code(self.code), self.message, self.details, **self.context)


class NodeState(msgspec.Struct, frozen=True):
    """What the gateway reads of a node, every refresh."""

    node_id: str
    snapshot_models: dict[str, Any]    # model id -> ModelView
    capacity: Capacity
    system: SystemInfo
    started_at: float


class NodeAgent:
    def __init__(self, node_id: str, config: Config, cache_dir: str, memory_mb: float) -> None:
        """`memory_mb`: what Ray says the node has for tasks (its declared memory); the supervisor's budget."""
        from supervisor.snapshot import system_info

        self.node_id = node_id
        server = msgspec.structs.replace(config.server, memory_budget_mb=memory_mb, ws_port=0)
        self.sup = Supervisor(msgspec.structs.replace(config, server=server), Path(cache_dir))
        self.sup.start()
        self._system_info = system_info
        log.info("node agent %s: supervisor started (budget %.0f MB, cache %s)", node_id, memory_mb, cache_dir)

    def state(self) -> NodeState:
        return NodeState(node_id=self.node_id, snapshot_models=dict(self.sup.snapshot.models),
                         capacity=self.sup.capacity(), system=self._system_info(self.sup.started_at),
                         started_at=self.sup.started_at)

    def load(self, model_id: str, force_reload: bool, timeout_s: float) -> float | AgentRefusal:
        """Load and wait; the load's time in ms, or why it failed."""
        began = time.monotonic()
        try:
            self.sup.await_load(self.sup.request_load(model_id, force_reload, timeout_s))
        except SupervisorError as exc:
            return AgentRefusal.of(exc)
        return (time.monotonic() - began) * 1000

    def unload(self, model_id: str) -> UnloadView | AgentRefusal:
        try:
            return self.sup.unload(model_id)
        except SupervisorError as exc:
            return AgentRefusal.of(exc)

    def register(self, name: str, config_json: bytes) -> bool | AgentRefusal:
        try:
            return self.sup.register(name, config_json)
        except SupervisorError as exc:
            return AgentRefusal.of(exc)

    def forget(self, name: str) -> None | AgentRefusal:
        try:
            self.sup.forget(name)
        except SupervisorError as exc:
            return AgentRefusal.of(exc)
        return None

    def order(self, order: Order) -> Any:
        """One order, answered: a WorkResult, a stream id, None, or an AgentRefusal."""
        try:
            return self.sup.submit(order)[0].result(timeout=ORDER_BACKSTOP_S)
        except SupervisorError as exc:
            return AgentRefusal.of(exc)

    def ping(self) -> None:
        """Nothing: the benchmark times a bare call to an agent, the floor of any hop to a node."""

    def close(self) -> None:
        self.sup.close()
