"""The arbiter's periodic rules, as facts: heartbeats, stream expiry, queue deadlines, scaling, idle unloads.

`facts(now)` only reads the model table and says what it sees (`HeartbeatLost`, `ScaleUp`, `ModelIdle`, ...);
the arbiter routes each fact to the part that acts on it, once per tick (every quarter second). Being pure
over the table and the time it is given, every rule here is testable without a loop or a process.
"""

from __future__ import annotations

import logging

from supervisor.arbiter.admission import Admission
from supervisor.arbiter.board import Board
from supervisor.arbiter.events import (Event, HeartbeatLost, ModelIdle, QueueOverdue, ReplicaIdle, ScaleUp,
                                       StreamExpired)
from supervisor.config import ServerSettings
from supervisor.replica import Model
from supervisor.states import ModelStatus
from supervisor.streams import StreamRegistry

log = logging.getLogger(__name__)

TICK_S = 0.25
MEMORY_EVERY_S = 1.0
CACHE_SIZE_EVERY_S = 5.0
IDLE_READ_EVERY_S = 30.0   # both, while the server idles


def preload_order(models: dict[str, Model]) -> list[str]:
    """The reference's ProductionModelManager order: required first, then by priority, highest first."""
    chosen = [m for m, model in models.items() if model.config.preload]
    return sorted(chosen, key=lambda m: (not models[m].config.required, -models[m].config.priority))


class Housekeeping:
    def __init__(self, models: dict[str, Model], streams: StreamRegistry, admission: Admission, board: Board,
                 settings: ServerSettings) -> None:
        self.models, self.streams, self.admission = models, streams, admission
        self.board, self.settings = board, settings

    def facts(self, now: float, listening_since: float) -> list[Event]:
        """What needs doing now; heartbeat silence counts only from `listening_since` (the loop's last stall)."""
        found: list[Event] = [StreamExpired(self.models[s.model_id], s) for s in self.streams.expired(now)
                              if s.model_id in self.models]
        for model in self.models.values():
            found += self._silent(model, now, listening_since)
            if model.serving() and any(now > work.queue_deadline for work in model.queue):
                found.append(QueueOverdue(model))
            found += self._scaling(model, now)
        return found

    def _silent(self, model: Model, now: float, listening_since: float) -> list[Event]:
        timeout = self.settings.heartbeat_timeout_s
        silent = [(r, now - max(r.last_heartbeat, listening_since)) for r in model.replicas
                  if r.ready and not r.stopping]
        return [HeartbeatLost(model, replica, silent_s) for replica, silent_s in silent if silent_s > timeout]

    def _scaling(self, model: Model, now: float) -> list[Event]:
        if model.status is not ModelStatus.LOADED or self.board.closing:
            return []
        config = model.config
        current = model.current()
        starting = any(not r.ready for r in current)
        waited_ms = (now - model.queue[0].enqueued_at) * 1000 if model.queue else 0.0
        wanted = len(current) < config.min_replicas or (waited_ms > config.scale_up_after_ms and not starting)
        if wanted and len(current) < config.replica_limit and now >= model.scale_blocked_until \
                and self.admission.fits(model):
            return [ScaleUp(model, waited_ms)]
        return self._idle(model, now)

    @staticmethod
    def _idle(model: Model, now: float) -> list[Event]:
        keep_alive = model.config.keep_alive_s
        if keep_alive < 0 or model.queue or model.job is not None:
            return []
        serving = model.serving()
        idle = [r for r in serving if not r.running and not r.streams and now - r.last_used >= keep_alive]
        if not idle:
            return []
        if len(serving) > max(1, model.config.min_replicas):
            replica = min(idle, key=lambda r: r.last_used)
            return [ReplicaIdle(model, replica, now - replica.last_used)]
        if model.config.min_replicas == 0 and len(idle) == len(serving) == len(model.replicas):
            return [ModelIdle(model, now - max(r.last_used for r in serving))]
        return []
