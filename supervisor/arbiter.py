"""The arbiter: the one owner of every model, replica, job, stream, queue and counter.

It lives on the event loop's thread. Its parts are split by job: `replicas` starts, watches and stops processes,
`lifecycle` loads and unloads models, `dispatch` queues and routes requests, `housekeeping` runs the periodic
checks, `snapshot` publishes what readers see. Futures handed to other threads are settled only after the turn's
snapshot is published (`EventLoop.settle`), so whoever wakes up reads a state at least as new as its answer.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from wire.protocol import HEARTBEAT_SUFFIX, Heartbeat, LoadFailed, Progress, Ready, Reply, RequestFailed
from supervisor.admission import Admission, Footprints
from supervisor.catalog import catalog_entry
from supervisor.config import Config, completed
from supervisor.dispatch import Dispatcher
from supervisor.event_loop import EventLoop
from supervisor.housekeeping import Housekeeping
from supervisor.operations import Operations
from supervisor.jobs import LoadGroup, LoadJob
from supervisor.lifecycle import Lifecycle
from supervisor.metrics import SupervisorMetrics
from supervisor.replica import Model
from supervisor.registry import Registry
from supervisor.replicas import Replicas
from supervisor.restarts import RestartPolicy
from supervisor.snapshot import Snapshot, build_snapshot, job_view
from supervisor.spawner import Spawner
from supervisor.streams import StreamRegistry

log = logging.getLogger(__name__)

KEEP_JOBS = 512


class Arbiter:
    def __init__(self, config: Config, cache_dir: Path, spawner: Spawner, stop_grace_s: float,
                 log_format: str, version: str, started_at: float) -> None:
        self.settings = config.server
        self.cache_dir = cache_dir
        self.version = version
        self.started_at = started_at
        self.log_format = log_format
        self.stop_grace_s = stop_grace_s
        self.registry = Registry(cache_dir)
        completed_models = {name: completed(name, model)  # idempotent: a test may hand over bare settings
                            for name, model in (config.models | self.registry.read()).items()}
        self.models = {name: Model(catalog_entry(name, model), model) for name, model in completed_models.items()}
        self.streams = StreamRegistry()
        self.jobs: OrderedDict[str, LoadJob | LoadGroup] = OrderedDict()
        self.closing = False
        self.spawner = spawner
        self.loop = EventLoop(self._on_message, self._after_turn)
        self.restart_policy = RestartPolicy(self.settings.restart_budget, self.settings.restart_window_s,
                                            self.settings.restart_backoff_max_s)
        self.admission = Admission(self, Footprints(cache_dir))
        self.replicas = Replicas(self)
        self.lifecycle = Lifecycle(self)
        self.dispatch = Dispatcher(self)
        self.housekeeping = Housekeeping(self)
        self.operations = Operations(self)
        self._dirty_jobs: set[LoadJob | LoadGroup] = set()
        self._job_views: dict = {}
        self._dirty = True
        self.cache_size_mb = 0.0
        self.snapshot: Snapshot = build_snapshot(self, {})
        self.metrics = SupervisorMetrics(self)

    def start(self) -> None:
        self.loop.start()
        self.loop.post(self.housekeeping.start)

    def estimated_load_ms(self, model: Model) -> int:
        """The last measured load time, or the catalog's estimate before the first load."""
        return int(model.load_time_ms) if model.load_time_ms is not None else model.entry.estimated_load_ms

    # -- bookkeeping every part uses ---------------------------------------------------------------
    def changed(self, job: LoadJob | LoadGroup | None = None) -> None:
        """Something readers can see changed: publish at the end of this turn."""
        self._dirty = True
        if job is not None:
            self._dirty_jobs.add(job)
            if isinstance(job, LoadJob):
                self._dirty_jobs.update(job.groups)

    def settle(self, future: Future, result: Any = None, error: BaseException | None = None) -> None:
        self.loop.settle(future, result, error)

    def remember(self, job: LoadJob | LoadGroup) -> None:
        self.jobs[job.load_id] = job
        while len(self.jobs) > KEEP_JOBS:
            self.jobs.popitem(last=False)
        self.changed(job)

    def _after_turn(self) -> None:
        if self._dirty:
            self._dirty = False
            if self._dirty_jobs:
                views = dict(self._job_views)
                for job in self._dirty_jobs:
                    views[job.load_id] = job_view(job)
                self._dirty_jobs.clear()
                self._job_views = {k: views[k] for k in self.jobs if k in views}
            self.snapshot = build_snapshot(self, self._job_views)

    # -- messages from model processes --------------------------------------------------------------
    def _on_message(self, identity: bytes, message: Any) -> None:
        if isinstance(message, Heartbeat):
            replica = self.replicas.by_identity.get(identity.removesuffix(HEARTBEAT_SUFFIX))
            if replica is not None:
                replica.last_heartbeat = time.monotonic()
            return
        replica = self.replicas.by_identity.get(identity)
        if replica is None:
            log.warning("dropped %s from unknown process %r", type(message).__name__, identity)
            return
        match message:
            case Reply() | RequestFailed():
                self.dispatch.on_reply(replica, message)
            case Ready():
                self.replicas.on_ready(replica, message)
            case LoadFailed(reason=reason, hint=hint):
                log.warning("model %s: pid %d could not load: %s", replica.model_id, replica.pid, reason)
                replica.load_failure = (reason, hint)
            case Progress(phase=phase):
                self.lifecycle.on_progress(replica, phase)
