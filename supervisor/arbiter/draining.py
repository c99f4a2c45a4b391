"""Draining a replica before it stops: it takes no new work; what runs finishes, and with `keep_streams` its
streams finish too, bounded by drain_timeout_s. Used for idle scale-down, force_reload and unload."""

from __future__ import annotations

from typing import Callable

from supervisor.arbiter.board import Board
from supervisor.arbiter.loop import Loop
from supervisor.arbiter.replicas import Replicas
from supervisor.config import ServerSettings
from supervisor.replica import Model, Replica


class Drainer:
    def __init__(self, loop: Loop, replicas: Replicas, board: Board, settings: ServerSettings) -> None:
        self.loop, self.replicas, self.board, self.settings = loop, replicas, board, settings

    def retire(self, model: Model, replica: Replica, reason: str, keep_streams: bool,
               then: Callable[[Replica], None] | None = None) -> None:
        """Drain, then stop; `then` runs once the process is gone."""
        replica.keep_streams = replica.keep_streams and keep_streams if replica.draining else keep_streams
        replica.draining, replica.drain_reason = True, reason
        if then is not None:
            replica.on_exit.append(then)
        self.loop.call_later(self.settings.drain_timeout_s,
                             lambda: self.replicas.stop(replica, f"{reason}; drain_timeout_s passed"), model.model_id)
        self.board.changed()
        self.on_work_done(model, replica)

    def on_work_done(self, model: Model, replica: Replica) -> None:
        """A draining replica stops once its work, the work pinned to it and (if kept) its streams are done."""
        if not replica.draining:
            return
        pinned = any(w.pinned == replica.identity for w in model.queue)
        if not replica.running and not pinned and not (replica.keep_streams and replica.streams):
            self.replicas.stop(replica, replica.drain_reason or "drained")
