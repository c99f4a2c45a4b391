"""The arbiter: the one owner of every model, replica, job, stream, queue and counter, on the loop's thread.

It builds the parts, each with only what it needs, and routes what happens to them in one `match` (`route`):
messages from model processes and the facts the parts report (`events`). Commands go down: the arbiter and
Lifecycle call the parts; no part calls the one above it. Futures handed to other threads are settled only
after the turn's snapshot is published (`EventLoop.settle`), so whoever wakes up reads a state at least as new
as its answer. Code that raises while working on a model fails that model (`Lifecycle.fail_hard`), not the
loop and not the other models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from supervisor.arbiter.admission import Admission, Footprints
from supervisor.arbiter.board import Board
from supervisor.arbiter.dispatch import Dispatcher
from supervisor.arbiter.draining import Drainer
from supervisor.arbiter.event_loop import EventLoop
from supervisor.arbiter.events import (Event, HeartbeatLost, ModelIdle, OverMemoryCap, QueueOverdue, ReplicaGone,
                                       ReplicaIdle, ReplicaReady, RequestStuck, ScaleUp, StreamExpired, Unreachable,
                                       WorkDone)
from supervisor.arbiter.housekeeping import (CACHE_SIZE_EVERY_S, IDLE_READ_EVERY_S, MEMORY_EVERY_S, TICK_S,
                                             Housekeeping)
from supervisor.arbiter.lifecycle import Lifecycle
from supervisor.arbiter.loop import Loop, OnFailure
from supervisor.arbiter.operations import Operations
from supervisor.arbiter.replicas import ProcessSettings, Replicas
from supervisor.catalog import catalog_entry
from supervisor.config import Config, completed
from supervisor.metrics import SupervisorMetrics
from supervisor.registry import Registry
from supervisor.replica import Model, Replica
from supervisor.restarts import RestartPolicy
from supervisor.snapshot import Snapshot, build_snapshot, directory_size_mb, job_view
from supervisor.spawner import Spawner
from supervisor.streams import StreamRegistry
from wire.protocol import HEARTBEAT_SUFFIX, Heartbeat, LoadFailed, Progress, Ready, Replies, Reply, RequestFailed

log = logging.getLogger(__name__)

MakeLoop = Callable[[Callable[[bytes, Any], None], Callable[[], None], OnFailure], Loop]


class Arbiter:
    def __init__(self, config: Config, cache_dir: Path, spawner: Spawner, stop_grace_s: float,
                 log_format: str, version: str, started_at: float, make_loop: MakeLoop = EventLoop) -> None:
        self.settings = settings = config.server
        self.cache_dir = cache_dir
        self.version = version
        self.started_at = started_at
        self.loop = make_loop(self._on_message, self._after_turn, self._on_failure)
        self.registry = Registry(cache_dir)
        self.models = {name: Model(catalog_entry(name, model), model)
                       for name, model in self._configured(config).items()}
        self.streams = StreamRegistry()
        self.board = Board(self.loop)
        self._job_views: dict = {}
        self._memory_read_at = self._cache_read_at = 0.0
        self._seen: tuple = ()        # requests run and processes serving at the last tick
        self._active_at = 0.0         # when they last changed, or work was last queued, running or loading
        self.cache_size_mb = 0.0
        self.snapshot: Snapshot = build_snapshot(self, {})
        self.metrics = SupervisorMetrics(lambda: self.snapshot)
        self.restart_policy = RestartPolicy(settings.restart_budget, settings.restart_window_s,
                                            settings.restart_backoff_max_s, self.loop.now)
        self.admission = Admission(self.models, settings, Footprints(cache_dir))
        self.replicas = Replicas(self.loop, spawner, self.models, self.board,
                                 ProcessSettings(cache_dir, log_format, stop_grace_s), self.route)
        self.dispatch = Dispatcher(self.loop, self.models, self.replicas.by_identity, self.streams, self.board,
                                   settings, self.metrics, self.route)
        self.drainer = Drainer(self.loop, self.replicas, self.board, settings)
        self.lifecycle = Lifecycle(self.loop, self.replicas, self.drainer, self.dispatch, self.admission,
                                   self.restart_policy, self.board, settings)
        self.housekeeping = Housekeeping(self.models, self.streams, self.admission, self.board, settings)
        self.operations = Operations(self.models, self.lifecycle, self.dispatch, self.replicas.by_identity,
                                     self.streams, self.registry, self.board, settings)

    def _configured(self, config: Config) -> dict:
        """The config's models and the registered ones, completed (idempotent: a test may hand bare settings)."""
        return {name: completed(name, model) for name, model in (config.models | self.registry.read()).items()}

    @property
    def closing(self) -> bool:
        return self.board.closing

    def start(self) -> None:
        self.loop.start()
        self.loop.post(self._tick_later)

    # -- what happens, routed ----------------------------------------------------------------------------
    def route(self, event: Event) -> None:
        """Every fact a part reports, to the part that acts on it."""
        match event:
            case ReplicaReady(model, replica, ready):
                self.metrics.load_duration.labels(model.model_id).observe(ready.timings.total_ms / 1000)
                self._refresh_cache_size()
                self.lifecycle.on_replica_ready(model, replica)
            case ReplicaGone(model, replica):
                self.lifecycle.on_replica_gone(model, replica)
            case WorkDone(model, replica):
                self.drainer.on_work_done(model, replica)
            case OverMemoryCap() | RequestStuck() | Unreachable() | HeartbeatLost():
                self.lifecycle.kill(event)
            case StreamExpired(model, stream):
                log.info("model %s: stream %s expired after %.0f s idle", model.model_id, stream.stream_id,
                         stream.expires_in_s)
                self.streams.remove(stream.stream_id)
                self.dispatch.drop_stream(stream.identity, stream.stream_id)
                self.board.changed()
            case QueueOverdue(model):
                self.dispatch.expire_queue(model)
            case ScaleUp(model, waited_ms):
                self.lifecycle.scale_up(model, waited_ms)
            case ReplicaIdle(model, replica, idle_s):
                self.drainer.retire(model, replica, f"idle for {idle_s:.1f} s", keep_streams=True)
            case ModelIdle(model, idle_s):
                keep_alive = model.config.keep_alive_s
                model.usage.idle_unloads += 1
                log.info("model %s: unloading after %.1f s idle (keep_alive_s=%g)", model.model_id, idle_s,
                         keep_alive)
                self.lifecycle.unload(model, f"idle for {idle_s:.1f} s (keep_alive_s={keep_alive:g})",
                                      lambda *_: None)

    def _on_message(self, identity: bytes, message: Any) -> None:
        """A message from a model process: facts about that process, handled like the parts' events."""
        if isinstance(message, Heartbeat):
            replica = self.replicas.by_identity.get(identity.removesuffix(HEARTBEAT_SUFFIX))
            if replica is not None:
                replica.last_heartbeat = self.loop.now()
            return
        replica = self.replicas.by_identity.get(identity)
        if replica is None:
            log.warning("dropped %s from unknown process %r", type(message).__name__, identity)
            return
        try:
            self._from_replica(replica, message)
        except Exception as exc:
            self._on_failure(replica.model_id, exc)

    def _from_replica(self, replica: Replica, message: Any) -> None:
        match message:
            case Reply() | RequestFailed():
                self.dispatch.on_replies(replica, (message,))
            case Replies(items=items):
                self.dispatch.on_replies(replica, items)
            case Ready():
                self.replicas.on_ready(replica, message)
            case LoadFailed(reason=reason, hint=hint):
                log.warning("model %s: pid %d could not load: %s", replica.model_id, replica.pid, reason)
                replica.load_failure = (reason, hint)
            case Progress(phase=phase):
                self.lifecycle.on_progress(self.models[replica.model_id], replica, phase)

    def _on_failure(self, model_id: str, error: BaseException) -> None:
        model = self.models.get(model_id)
        if model is None:
            log.error("model %s (since forgotten): %s", model_id, error, exc_info=error)
            return
        self.lifecycle.fail_hard(model, error)

    # -- every tick --------------------------------------------------------------------------------------
    def _tick_later(self) -> None:
        self.loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        try:
            now = self.loop.now()
            for event in self.housekeeping.facts(now, self.loop.resumed_at):
                try:
                    self.route(event)
                except Exception as exc:
                    self._on_failure(event.model.model_id, exc)
            idle = self._idle(now)
            if now - self._memory_read_at >= (IDLE_READ_EVERY_S if idle else MEMORY_EVERY_S):
                self._memory_read_at = now
                self.replicas.refresh_memory()
            if now - self._cache_read_at >= (IDLE_READ_EVERY_S if idle else CACHE_SIZE_EVERY_S):
                self._refresh_cache_size()
        finally:
            self._tick_later()

    def _idle(self, now: float) -> bool:
        """For two memory reads' time no request ran, no process came or went, and nothing loads, queues or
        streams: memory and the cache cannot have grown since, so they are read rarely (a read of a 1 GB
        process's smaps costs 6-15 ms of CPU)."""
        seen = (sum(model.usage.batches for model in self.models.values()),
                frozenset(r.identity for model in self.models.values() for r in model.serving()))
        if seen != self._seen or any(model.busy() or model.job is not None or
                                     any(not r.ready or r.stopping for r in model.replicas)
                                     for model in self.models.values()):
            self._active_at = now
        self._seen = seen
        return now - self._active_at > 2.5 * MEMORY_EVERY_S

    def _refresh_cache_size(self) -> None:
        """Walked off the loop every few seconds, and after each load (it may have fetched or made files)."""
        self._cache_read_at = self.loop.now()
        self.loop.offload(lambda: directory_size_mb(self.cache_dir), self._cache_size_read)

    def _cache_size_read(self, size_mb: float | None, _) -> None:
        if size_mb is not None:
            self.cache_size_mb = size_mb
            self.board.changed()

    # -- what readers see --------------------------------------------------------------------------------
    def _after_turn(self) -> None:
        board = self.board
        if board.dirty:
            board.dirty = False
            if board.dirty_jobs:
                views = dict(self._job_views)
                for job in board.dirty_jobs:
                    views[job.load_id] = job_view(job)
                board.dirty_jobs.clear()
                self._job_views = {k: views[k] for k in board.jobs if k in views}
            self.snapshot = build_snapshot(self, self._job_views)
