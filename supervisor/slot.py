"""One model's place in the supervisor: its lifecycle state, its process, its current load, its history."""

from __future__ import annotations

import logging
import threading
import time

from model_procs.protocol import LoadTimings
from supervisor.catalog import CatalogEntry
from supervisor.config import ModelConfig
from supervisor.jobs import LoadJob
from supervisor.memory import private_dirty_mb
from supervisor.states import ModelStatus, check_transition
from supervisor.usage import UsageStats
from supervisor.workers import WorkerHandle

log = logging.getLogger(__name__)

UNIQUE_MEMORY_TTL_S = 1.0  # smaps_rollup costs 6–15 ms on a 1 GB process: read it at most once a second


class ModelSlot:
    """Fields change only under `lock`; the transition table (states.py) guards every status change."""

    def __init__(self, entry: CatalogEntry, config: ModelConfig) -> None:
        self.entry = entry
        self.config = config
        self.lock = threading.RLock()
        self.status = ModelStatus.UNLOADED
        self.worker: WorkerHandle | None = None       # the process serving (or being loaded)
        self.candidate: WorkerHandle | None = None    # the process being loaded (force_reload: beside `worker`)
        self.job: LoadJob | None = None               # the load in flight, if any
        self.unloaded = threading.Event()             # set while no unload is in progress
        self.unloaded.set()
        self.last_error: str | None = None
        self.restarts = 0
        self.crashes = 0
        self.load_time_ms: float | None = None
        self.timings: LoadTimings | None = None
        self.resolved_source: str | None = None
        self.loads = 0
        self.cache_hits = 0
        self.usage = UsageStats()
        self._unique_mb: tuple[int, float, float] = (0, 0.0, 0.0)  # (pid, read at, MB)

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    def transition(self, new: ModelStatus, reason: str) -> None:
        check_transition(self.status, new)
        pid = self.worker.pid if self.worker else None
        log.info("model %s: %s -> %s (%s) pid=%s", self.model_id, self.status.value, new.value, reason, pid)
        self.status = new

    def unique_memory_mb(self) -> float:
        """Private_Dirty of the serving process, cached for a second."""
        if self.worker is None:
            return 0.0
        pid, read_at, value = self._unique_mb
        now = time.monotonic()
        if pid != self.worker.pid or now - read_at > UNIQUE_MEMORY_TTL_S:
            pid, value = self.worker.pid, private_dirty_mb(self.worker.pid)
            self._unique_mb = (pid, now, value)
        return value
