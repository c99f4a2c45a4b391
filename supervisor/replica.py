"""One model process as the arbiter sees it, and a model's state: its replicas, queue, load job and history.

Only the arbiter thread reads or writes these objects; everyone else reads the published snapshot.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

from wire.protocol import LoadTimings
from supervisor.catalog import CatalogEntry
from wire.model_config import ModelConfig
from supervisor.timer import Timer
from supervisor.jobs import LoadJob
from supervisor.spawner import Child, describe_exit
from supervisor.states import ModelStatus, check_transition
from supervisor.usage import UsageStats

if TYPE_CHECKING:
    from supervisor.work import Work

log = logging.getLogger(__name__)


class Replica:
    """A process of one model. `generation` says which replica set it belongs to (a force_reload starts a new
    one); `draining` ones take no new work but their own streams'; `stopping` ones take nothing."""

    def __init__(self, model_id: str, identity: bytes, generation: int) -> None:
        now = time.monotonic()
        self.model_id = model_id
        self.identity = identity
        self.generation = generation
        self.child: Child | None = None
        self.pid = 0
        self.ready = False
        self.draining = False
        self.stopping = False
        self.running: list[Work] = []                     # the batch it is working on (empty: idle)
        self.deadline: Timer | None = None
        self.streams: set[str] = set()
        self.last_heartbeat = now
        self.last_used = now
        self.kill_reason: str | None = None
        self.load_failure: tuple[str, str] | None = None   # (reason, hint) from its LoadFailed
        self.exitcode: int | None = None
        self.oom_kills_at_spawn = 0                         # the cgroup's OOM kill count when it was started
        self.oom_killed = False                             # died of SIGKILL while that count went up
        self.rss_mb = 0.0
        self.unique_mb = 0.0
        self.gpu_mb: float | None = None                   # device memory (NVML), only where a GPU is present
        self.on_exit: list[Callable[[Replica], None]] = []  # Lifecycle's, run once it is gone
        self.drain_reason: str | None = None                # why it drains: checked after each piece of work
        self.keep_streams = True                            # drain waits for its streams to finish

    @property
    def state(self) -> str:
        if self.stopping:
            return "stopping"
        if not self.ready:
            return "starting"
        if self.draining:
            return "draining"
        return "busy" if self.running else "idle"

    def kill(self, reason: str) -> None:
        """The supervisor's own verdict (watchdog, deadline, cap): remembered so last_error says why."""
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.child is not None:
            self.child.signal(9)

    def describe_exit(self) -> str:
        if self.kill_reason:
            return f"killed by the supervisor: {self.kill_reason}"
        if self.oom_killed:
            return "killed by the out-of-memory killer (its memory limit, or the machine's, was reached)"
        return describe_exit(self.exitcode)


class Model:
    """One model: its lifecycle status (a summary of its replicas), queue, load job and history."""

    def __init__(self, entry: CatalogEntry, config: ModelConfig) -> None:
        self.entry = entry
        self.config = config
        self.status = ModelStatus.UNLOADED
        self.replicas: list[Replica] = []
        self.generation = 0                     # the replica set dispatch uses
        self.generations = itertools.count(1)   # each load starts a new set, cancelled ones included
        self.job: LoadJob | None = None         # the load in flight or waiting to start
        self.queue: deque[Work] = deque()
        self.unload_waiters: list = []           # lifecycle.UnloadWaiter: unload calls still waiting
        self.restart_timer: Timer | None = None
        self.batch_timer: Timer | None = None  # max_batch_delay_ms: a short batch waits for more
        self.scale_blocked_until = 0.0
        self.last_error: str | None = None
        self.restarts = 0
        self.crashes = 0
        self.evictions = 0
        self.load_time_ms: float | None = None
        self.timings: LoadTimings | None = None
        self.resolved_source: str | None = None
        self.loader: str | None = None          # how the last replica loaded its weights: mapped / automodel
        self.loader_note: str | None = None     # why it was not mapped
        self.weights_files: tuple[str, ...] = ()  # the files its replicas map their weights from
        self.weights_mb = 0.0                   # their pages in the page cache: shared, counted once
        self.engine: str | None = None          # what runs the last replica: torch / onnx
        self.quantize: str | None = None
        self.engine_note: str | None = None     # why onnx was asked for and torch runs it
        self.loads = 0
        self.cache_hits = 0
        self.usage = UsageStats()

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    def estimated_load_ms(self) -> int:
        """The last measured load time, or the catalog's estimate before the first load."""
        return int(self.load_time_ms) if self.load_time_ms is not None else self.entry.estimated_load_ms

    def transition(self, new: ModelStatus, reason: str) -> None:
        check_transition(self.status, new)
        pids = [r.pid for r in self.replicas if not r.stopping] or None
        log.info("model %s: %s -> %s (%s) pid=%s", self.model_id, self.status.value, new.value, reason, pids)
        self.status = new

    def fail_now(self, reason: str) -> None:
        """Outside the transition table, for one case: code working on the model raised (`Lifecycle.fail_hard`)."""
        log.error("model %s: %s -> failed (%s)", self.model_id, self.status.value, reason)
        self.status = ModelStatus.FAILED

    def current(self) -> list[Replica]:
        """The replica set dispatch uses, starting ones included."""
        return [r for r in self.replicas if r.generation == self.generation and not (r.stopping or r.draining)]

    def serving(self) -> list[Replica]:
        return [r for r in self.current() if r.ready]

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if not r.stopping]

    def holds_weights(self) -> bool:
        """Its mapped weights are in use: some process of it is up."""
        return bool(self.weights_files) and bool(self.live())

    def warm_mb(self) -> float | None:
        """Unloaded with keep_warm: the weights still in the page cache, which the next load finds there."""
        if self.config.keep_warm and self.weights_files and not self.replicas and self.weights_mb > 0:
            return self.weights_mb
        return None

    def busy(self) -> bool:
        """Work queued or running, or a stream open: what idle unloading and eviction must respect."""
        return bool(self.queue) or any(r.running or r.streams for r in self.replicas)
