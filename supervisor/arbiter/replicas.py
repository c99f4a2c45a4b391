"""Starting, watching and stopping replica processes, on the arbiter thread; the slow parts go to the executor.

A process is started off the loop (a forkserver spawn), watched through its pidfd, and reaped off the loop. It
is stopped by asking (Shutdown), then SIGTERM, then SIGKILL, each after `stop_grace_s`; its Private_Dirty is
read just before, since that is what the stop gives back. What happens to a process is reported up as an
event (`ReplicaReady`, `ReplicaGone`, `OverMemoryCap`); what to do about it is not decided here.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Callable

import msgspec

from supervisor import cgroup, gpu, page_cache
from supervisor.arbiter.board import Board
from supervisor.arbiter.events import Event, OverMemoryCap, ReplicaGone, ReplicaReady
from supervisor.arbiter.loop import Loop
from supervisor.replica import Model, Replica
from supervisor.spawner import Spawner
from wire.protocol import EXIT_LOAD_FAILED, Ready, Shutdown, WorkerSpec

log = logging.getLogger(__name__)

LOAD_FAILED_GRACE_S = 1.0  # how long an exit with EXIT_LOAD_FAILED waits for its LoadFailed message


class ProcessSettings(msgspec.Struct, frozen=True):
    cache_dir: Path
    log_format: str
    stop_grace_s: float


class Replicas:
    def __init__(self, loop: Loop, spawner: Spawner, models: dict[str, Model], board: Board,
                 settings: ProcessSettings, report: Callable[[Event], None]) -> None:
        self.loop, self.spawner, self.models, self.board = loop, spawner, models, board
        self.settings, self.report = settings, report
        self.by_identity: dict[bytes, Replica] = {}

    def start(self, model: Model, generation: int) -> Replica:
        identity = f"{model.model_id}:{uuid.uuid4().hex[:12]}".encode()
        replica = Replica(model.model_id, identity, generation)
        model.replicas.append(replica)
        self.by_identity[identity] = replica
        config = model.config
        spec = WorkerSpec(model_id=model.model_id, kind=config.kind,
                          engine=model.entry.kind.engine, source=config.source, device=config.device,
                          threads=config.thread_count, endpoint=self.loop.endpoint, identity=identity,
                          supervisor_pid=os.getpid(), cache_dir=str(self.settings.cache_dir),
                          spawned_at=time.monotonic(), log_format=self.settings.log_format, loader=config.loader,
                          runtime=config.engine, quantize=config.quantize)
        self.loop.offload(lambda: (cgroup.oom_kills(), self.spawner.spawn(spec)),
                          lambda started, error: self._spawned(model, replica, started, error), model.model_id)
        self.board.changed()
        return replica

    def _spawned(self, model: Model, replica: Replica, started: tuple | None, error: BaseException | None) -> None:
        if error is not None:
            log.error("model %s: could not start a process: %s", model.model_id, error)
            replica.load_failure = (f"could not start a model process: {error}", "see the server log")
            self._gone(model, replica)
            return
        assert started is not None   # the executor gave either a result or an error
        replica.oom_kills_at_spawn, child = started
        replica.child, replica.pid = child, child.pid
        log.info("model %s: process %d spawned (source %s)", model.model_id, child.pid, model.config.source)
        self.loop.watch(child.exit_fd, lambda: self.loop.offload(
            lambda: (child.reap(), cgroup.oom_kills()), lambda reaped, _: self._reaped(model, replica, reaped),
            model.model_id), model.model_id)
        if replica.stopping or replica.kill_reason:  # given up on while it started
            child.signal(signal.SIGKILL)
        self.board.changed()

    def _reaped(self, model: Model, replica: Replica, reaped: tuple[int | None, int] | None,
                waited_s: float = 0.0) -> None:
        """A process that exits because it could not load sent LoadFailed first, but the message and the pidfd
        are two channels: give the reason a moment to arrive, so the error says why, not just "exited".
        A SIGKILL nobody here sent, while the cgroup's OOM kill count went up, was the kernel's OOM killer."""
        exitcode, oom_kills = reaped or (None, 0)
        replica.exitcode = exitcode
        replica.oom_killed = exitcode == -signal.SIGKILL and oom_kills > replica.oom_kills_at_spawn
        if exitcode == EXIT_LOAD_FAILED and replica.load_failure is None and waited_s < LOAD_FAILED_GRACE_S:
            self.loop.call_later(0.02, lambda: self._reaped(model, replica, reaped, waited_s + 0.02), model.model_id)
            return
        self._gone(model, replica)

    def _gone(self, model: Model, replica: Replica) -> None:
        if replica.deadline is not None:
            replica.deadline.cancel()
        if replica.child is not None:
            replica.child.close()
        model.replicas.remove(replica)
        self.by_identity.pop(replica.identity, None)
        self.board.changed()
        self.report(ReplicaGone(model, replica))

    def on_ready(self, replica: Replica, ready: Ready) -> None:
        """Read its memory (off the loop) before it counts as ready, so the load's answer has real figures."""
        replica.last_heartbeat = self.loop.now()  # a long load must not look like a silent process
        model = self.models[replica.model_id]

        def read() -> tuple[float, float, float]:
            weights = page_cache.resident_mb(*ready.weights_files)
            return (*self.spawner.memory_mb(replica.pid), weights)
        self.loop.offload(read, lambda memory, _: self._ready(model, replica, ready, memory), model.model_id)

    def _ready(self, model: Model, replica: Replica, ready: Ready, memory: tuple[float, float, float] | None) -> None:
        if replica.stopping or replica.identity not in self.by_identity:
            return
        replica.rss_mb, replica.unique_mb, model.weights_mb = memory or (0.0, 0.0, 0.0)
        model.loader, model.loader_note, model.weights_files = ready.loader, ready.loader_note, ready.weights_files
        model.engine, model.quantize, model.engine_note = ready.engine, ready.quantize, ready.engine_note
        replica.ready = True
        replica.last_heartbeat = replica.last_used = self.loop.now()
        model.timings, model.load_time_ms = ready.timings, ready.timings.total_ms
        model.resolved_source = ready.resolved_source
        model.loads += 1
        model.cache_hits += int(ready.source_was_cached)
        log.info("model %s: loaded by pid %d in %.0f ms (weights %.0f ms %s, engine %s%s, warm-up %.0f ms), "
                 "RSS %.1f MB, private %.1f MB, shared weights %.1f MB", model.model_id, replica.pid,
                 ready.timings.total_ms, ready.timings.weights_ms, ready.loader, ready.engine,
                 f" {ready.quantize}" if ready.quantize != "none" else "", ready.timings.warmup_ms, replica.rss_mb,
                 replica.unique_mb, model.weights_mb)
        self.board.changed()
        self.report(ReplicaReady(model, replica, ready))

    def stop(self, replica: Replica, reason: str) -> None:
        """Ask, then SIGTERM, then SIGKILL; `ReplicaGone` comes once the process is reaped."""
        if replica.stopping or replica.identity not in self.by_identity:
            return
        log.info("model %s: stopping pid %d (%s)", replica.model_id, replica.pid, reason)
        replica.stopping, replica.draining = True, False
        self.board.changed()
        if replica.child is None:
            return  # still starting: killed the moment its spawn returns
        if not replica.ready:
            replica.child.signal(signal.SIGKILL)  # a load given up on: nothing to save
            return
        self.loop.offload(lambda: self.spawner.memory_mb(replica.pid),
                          lambda memory, _: self._ask_to_exit(replica, memory), replica.model_id)

    def _ask_to_exit(self, replica: Replica, memory: tuple[float, float] | None) -> None:
        if memory is not None and memory[1] > 0:
            replica.unique_mb = memory[1]  # what the stop gives back
        self.loop.send(replica.identity, Shutdown())
        grace, child = self.settings.stop_grace_s, replica.child
        if child is None:   # never started: nothing to signal
            return
        self.loop.call_later(grace, lambda: child.signal(signal.SIGTERM), replica.model_id)
        self.loop.call_later(2 * grace, lambda: child.signal(signal.SIGKILL), replica.model_id)

    def refresh_memory(self) -> None:
        """RSS and Private_Dirty of every serving process, the page-cache size of each model's mapped weights
        (kept warm ones too) and, with a GPU, device memory, all read off the loop; then enforce max_memory_mb."""
        models = self.models.values()
        ready = [r for model in models for r in model.replicas if r.ready and not r.stopping]
        mapped = {m.model_id: m.weights_files for m in models if m.holds_weights() or m.warm_mb() is not None}
        if not ready and not mapped:
            return

        def read():
            return ([self.spawner.memory_mb(r.pid) for r in ready],
                    {model_id: page_cache.resident_mb(*paths) for model_id, paths in mapped.items()},
                    gpu.process_memory_mb())
        self.loop.offload(read, lambda figures, _: self._memory_read(ready, *(figures or ([], {}, None))))

    def _memory_read(self, replicas: list[Replica], figures: list[tuple[float, float]], weights: dict[str, float],
                     device: dict[int, float] | None) -> None:
        for model_id, resident in weights.items():
            if model_id in self.models:  # it may have been forgotten while the figures were read
                self.models[model_id].weights_mb = resident
        for replica, (rss, unique) in zip(replicas, figures):
            if replica.stopping or replica.identity not in self.by_identity:
                continue
            replica.rss_mb, replica.unique_mb = rss, unique
            replica.gpu_mb = None if device is None else device.get(replica.pid, 0.0)
            model = self.models[replica.model_id]
            if model.config.max_memory_mb and unique > model.config.max_memory_mb:
                self.report(OverMemoryCap(model, replica, unique, model.config.max_memory_mb))
        self.board.changed()
