"""The Supervisor: the typed, thread-safe facade the API calls. Lifecycle rules live here and in `loading`."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from model_procs.protocol import HEARTBEAT_SUFFIX, Heartbeat, LoadFailed, Progress, Ready
from supervisor.admission import Admission, Footprints
from supervisor.catalog import CATALOG, MODEL_IDS, funasr_version
from supervisor.config import Config
from supervisor.errors import SupervisorError, model_not_found, shown
from supervisor.io_loop import IoLoop
from supervisor.jobs import JobRegistry, LoadGroup, LoadJob
from supervisor.inference import Inference
from supervisor.loading import Loader
from supervisor.policy import Housekeeper, preload
from supervisor.memory import private_dirty_mb
from supervisor.metrics import SupervisorMetrics
from supervisor.slot import ModelSlot
from supervisor.states import ModelStatus
from supervisor.views import UnloadView
from supervisor.restarts import RestartPolicy
from supervisor.workers import LoadFailedError, Spawner, WorkerHandle

log = logging.getLogger(__name__)

ALL = "all"


class Supervisor:
    def __init__(self, config: Config, cache_dir: Path, stop_grace_s: float = 2.0, log_format: str = "text") -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.version = funasr_version()
        self.settings = config.server
        self.slots = {model_id: ModelSlot(CATALOG[model_id], config.models[model_id]) for model_id in MODEL_IDS}
        self.jobs = JobRegistry()
        self.loop = IoLoop(self._on_message)
        self._spawner = Spawner(self.loop, str(self.cache_dir), log_format)
        self._loader = Loader(self._spawner, self.jobs, self._on_worker_exit, self._on_loaded, stop_grace_s)
        self._stop_grace_s = stop_grace_s
        self._closed = False
        self.closing = False
        self.inference = Inference(self)
        self._housekeeper = Housekeeper(self)
        self._admission = Admission(self, Footprints(self.cache_dir))
        self.metrics = SupervisorMetrics(self)
        self._restarts = RestartPolicy(self.settings.restart_budget, self.settings.restart_window_s,
                                       self.settings.restart_backoff_max_s)

    # -- life of the supervisor itself -------------------------------------------------------------
    def start(self) -> None:
        """Start the I/O thread now and the forkserver in the background (it preloads torch+funasr: seconds)."""
        self.loop.start()
        self._housekeeper.start()
        threading.Thread(target=self._boot, name="supervisor-boot", daemon=True).start()

    def _boot(self) -> None:
        log.info("forkserver: booting with torch and funasr preloaded")
        log.info("forkserver: ready in %.1f s (pid %s)", self._spawner.boot(), self._spawner.forkserver_pid())
        preload(self)

    def close(self) -> None:
        """Refuse new work, let requests in flight finish (up to drain_timeout_s), unload every model, stop
        the I/O thread and the forkserver. Safe to call twice."""
        if self._closed:
            return
        self.closing = True
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while any(s.usage.in_flight for s in self.slots.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closed = True
        self._housekeeper.stop()
        for model_id in MODEL_IDS:
            self.unload(model_id)
        self.loop.stop()
        self._spawner.shutdown()
        log.info("supervisor: closed")

    def is_alive(self) -> bool:
        return self.loop.is_alive()

    def missing_required(self) -> list[str]:
        """Required models that are not loaded: what /readyz reports."""
        return [m for m, s in self.slots.items() if s.config.required and s.status is not ModelStatus.LOADED]

    # -- requests ----------------------------------------------------------------------------------
    def resolve(self, model_type: str, allow_all: bool = True) -> list[str]:
        if model_type == ALL and allow_all:
            return list(MODEL_IDS)
        if model_type not in self.slots:
            raise model_not_found(model_type, list(MODEL_IDS))
        return [model_type]

    def request_load(self, model_type: str, force_reload: bool = False,
                     timeout_s: float = 300.0) -> LoadJob | LoadGroup:
        """Start (or join) the load of one model or of `all`; returns at once with the job to watch."""
        if self._closed:
            raise SupervisorError("CONFLICT", "Server is shutting down", "retry against a running server")
        model_ids = self.resolve(model_type)
        jobs = [self._admit_and_request(self.slots[m], force_reload, timeout_s) for m in model_ids]
        if model_type != ALL:
            return jobs[0]
        group = LoadGroup(jobs)
        self.jobs.add(group)
        return group

    def _admit_and_request(self, slot: ModelSlot, force_reload: bool, timeout_s: float) -> LoadJob:
        with self._admission.lock:
            if self._loader.needs_process(slot, force_reload):
                self._admission.admit(slot)
            return self._loader.request(slot, force_reload, timeout_s)

    def evict(self, slot: ModelSlot) -> bool:
        """Unload an idle model to make room; False if it stopped being idle meanwhile."""
        with slot.lock:
            busy = slot.usage.in_flight or self.inference.streams.open_count(slot.model_id)
            if slot.status is not ModelStatus.LOADED or busy:
                return False
            slot.usage.evictions += 1
            self._begin_unload(slot, "evicted to free memory for another model")
        return True

    def await_load(self, job: LoadJob | LoadGroup) -> None:
        """Block until the job ends; raise its error if it did not complete."""
        for single in job.jobs if isinstance(job, LoadGroup) else [job]:
            single.done.wait(single.timeout_s + 30)  # the driver ends it by its deadline; this is a backstop
            if single.error_code:
                raise SupervisorError(single.error_code, f"Loading {single.model_id} failed: {single.error}",
                                      single.details or "", model_type=single.model_id, load_id=single.load_id)

    def estimated_load_ms(self, model_id: str) -> int:
        """The last measured load time, or the catalog's estimate before the first load."""
        slot = self.slots[model_id]
        return int(slot.load_time_ms) if slot.load_time_ms is not None else slot.entry.estimated_load_ms

    def job(self, load_id: str) -> LoadJob | LoadGroup:
        found = self.jobs.get(load_id)
        if found is None:
            raise SupervisorError("LOAD_NOT_FOUND", "Load not found",
                                  f"No load with id '{shown(load_id)}' is known (ids are kept for the last 512 loads)")
        return found

    def unload(self, model_type: str) -> UnloadView:
        """Stop the model's process (ask → SIGTERM → SIGKILL) and report what that returned. Idempotent."""
        began = time.monotonic()
        freed, was_loaded = 0.0, False
        for model_id in self.resolve(model_type):
            slot_freed, slot_was_loaded = self._unload_slot(self.slots[model_id])
            freed += slot_freed
            was_loaded |= slot_was_loaded
        remaining = [m for m, s in self.slots.items() if s.status is ModelStatus.LOADED]
        return UnloadView(model_type=model_type, memory_freed_mb=round(freed, 1),
                          unload_time_ms=round((time.monotonic() - began) * 1000, 1),
                          models_remaining=remaining, was_loaded=was_loaded)

    def _unload_slot(self, slot: ModelSlot) -> tuple[float, bool]:
        while True:
            with slot.lock:
                job = slot.job
                if job is not None and not job.done.is_set():
                    job.cancel_requested = True
                    if slot.candidate is not None:
                        slot.candidate.signal(signal.SIGKILL)  # the load's driver reaps it
                elif slot.status is ModelStatus.UNLOADING:
                    job = None
                else:
                    return self._begin_unload(slot)
            if job is not None:
                job.done.wait()
            else:
                slot.unloaded.wait()

    def _begin_unload(self, slot: ModelSlot, reason: str = "unload requested") -> tuple[float, bool]:
        """Called with the lock held; the slow stop happens after it is released."""
        if slot.status is not ModelStatus.LOADED:
            if slot.status is ModelStatus.FAILED:
                slot.transition(ModelStatus.UNLOADED, reason)
            return 0.0, False
        worker = slot.worker
        slot.unloaded.clear()
        slot.transition(ModelStatus.UNLOADING, reason)  # no new requests from here on
        slot.lock.release()
        try:
            self._drain(slot)
            freed = private_dirty_mb(worker.pid)
            how = self._spawner.stop(worker, self._stop_grace_s)
        finally:
            slot.lock.acquire()
        slot.worker = None
        slot.transition(ModelStatus.UNLOADED, f"process {worker.pid} stopped ({how}), {freed:.1f} MB returned")
        slot.unloaded.set()
        return freed, True

    def _drain(self, slot: ModelSlot) -> None:
        """Let requests already sent to the model finish (bounded), so an unload never cuts one off."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while slot.usage.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)

    def unload_if_idle(self, slot: ModelSlot) -> None:
        """Scale to zero: unload a model idle past keep_alive_s, never one with a request or stream open."""
        with slot.lock:
            keep_alive = slot.config.keep_alive_s
            if (slot.status is not ModelStatus.LOADED or keep_alive < 0 or slot.usage.idle_for() < keep_alive
                    or self.inference.streams.open_count(slot.model_id)):
                return
            idle = slot.usage.idle_for()
            slot.usage.idle_unloads += 1
            freed, _ = self._begin_unload(slot, f"idle for {idle:.1f} s (keep_alive_s={keep_alive:g})")
        log.info("model %s: unloaded after idling, %.1f MB returned", slot.model_id, freed)

    def after_request(self, slot: ModelSlot) -> None:
        if slot.config.keep_alive_s == 0:
            self._housekeeper.nudge()

    # -- events from the I/O thread ----------------------------------------------------------------
    def _on_message(self, identity: bytes, message: Ready | LoadFailed | Heartbeat | Progress) -> None:
        if isinstance(message, Heartbeat):
            beating = self._spawner.handles.get(identity.removesuffix(HEARTBEAT_SUFFIX))
            if beating is not None:
                beating.last_heartbeat = time.monotonic()
            return
        worker = self._spawner.handles.get(identity)
        if isinstance(message, Progress) and worker is not None:
            job = self.slots[worker.model_id].job
            if job is not None and self.slots[worker.model_id].candidate is worker:
                job.phase = message.phase
            return
        if worker is None:
            log.warning("dropped %s from unknown process %r", type(message).__name__, identity)
            return
        if worker.ready.done():
            log.warning("model %s: unexpected %s from pid %d", worker.model_id, type(message).__name__, worker.pid)
            return
        match message:
            case Ready():
                worker.last_heartbeat = time.monotonic()  # a long load must not look like a silent process
                worker.ready.set_result(message)
            case LoadFailed(reason=reason, hint=hint):
                log.warning("model %s: pid %d could not load: %s", worker.model_id, worker.pid, reason)
                worker.ready.set_exception(LoadFailedError(reason, hint))

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        """On the I/O thread, within a poll of the process's exit: fail what it owed, mark the model, restart."""
        self.loop.fail_pending(worker.identity, f"process {worker.pid} {worker.describe_exit()}")
        slot = self.slots[worker.model_id]
        with slot.lock:
            if slot.worker is not worker or slot.status is ModelStatus.UNLOADING:
                return  # a load that failed, or an unload we asked for: those paths report it
            slot.worker = None
            slot.last_error = f"model process {worker.pid} {worker.describe_exit()}"
            log.error("model %s: %s", slot.model_id, slot.last_error)
            if slot.status is not ModelStatus.LOADED:
                return  # a force_reload's old process: the new one is on its way
            slot.transition(ModelStatus.FAILED, slot.last_error)
            slot.crashes += 1
            if (slot.config.required or worker.kill_reason) and not self.closing:
                self._schedule_restart(slot, slot.crashes)

    def _schedule_restart(self, slot: ModelSlot, crash: int) -> None:
        delay = self._restarts.next_delay(slot.model_id)
        if delay is None:
            log.error("model %s: restart budget spent (%d in %.0f s); it stays failed", slot.model_id,
                      self._restarts.budget, self._restarts.window_s)
            return
        log.warning("model %s: restarting in %.1f s", slot.model_id, delay)
        timer = threading.Timer(delay, self._restart, args=(slot, crash))
        timer.daemon = True
        timer.start()

    def _restart(self, slot: ModelSlot, crash: int) -> None:
        with slot.lock:  # only if nothing else happened to the model since that crash
            if slot.status is not ModelStatus.FAILED or slot.crashes != crash or self.closing:
                return
            slot.restarts += 1
        try:
            self.request_load(slot.model_id, timeout_s=self.settings.load_timeout_s)
        except SupervisorError as exc:
            log.error("model %s: restart refused: %s (%s)", slot.model_id, exc.message, exc.details)

    def _on_loaded(self, slot: ModelSlot) -> None:
        slot.usage.touch()  # idleness counts from the load, not from the last request before it
        self._admission.footprints.record(slot, slot.unique_memory_mb())
        self.metrics.load_duration.labels(slot.model_id).observe(slot.load_time_ms / 1000)

    def watchdog(self) -> None:
        """Called by the housekeeper: kill loaded processes that stopped beating or outgrew their memory cap."""
        for slot in self.slots.values():
            worker = slot.worker
            if worker is None or slot.status is not ModelStatus.LOADED:
                continue
            silent = worker.heartbeat_age()
            if silent > self.settings.heartbeat_timeout_s:
                worker.kill(f"no heartbeat for {silent:.1f} s (hung)")
            cap = slot.config.max_memory_mb
            if cap and slot.unique_memory_mb() > cap:
                worker.kill(f"its memory ({slot.unique_memory_mb():.0f} MB) exceeded max_memory_mb={cap:g}")
