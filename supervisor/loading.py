"""Driving one model's load: start (or join) a job, spawn the process, wait for Ready within the timeout.

Each load has a short-lived driver thread, so neither API threads nor the I/O thread ever block on a
model's seconds of loading. Slot fields change only under `slot.lock`; nothing waits while holding it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

from model_procs.protocol import Ready
from supervisor.jobs import JobRegistry, JobStatus, LoadJob
from supervisor.memory import rss_mb
from supervisor.slot import ModelSlot
from supervisor.states import ModelStatus
from supervisor.workers import LoadFailedError, Spawner, WorkerExited, WorkerHandle

log = logging.getLogger(__name__)

Failure = tuple[str, str, str]  # (error code, message, details)


class Loader:
    def __init__(self, spawner: Spawner, jobs: JobRegistry, on_exit, on_loaded, stop_grace_s: float) -> None:
        self._spawner = spawner
        self._jobs = jobs
        self._on_exit = on_exit
        self._on_loaded = on_loaded
        self._stop_grace_s = stop_grace_s

    @staticmethod
    def needs_process(slot: ModelSlot, force_reload: bool) -> bool:
        """Whether `request` would start a new process (not join one, not report an already loaded model)."""
        joining = slot.job is not None and not slot.job.done.is_set()
        return not joining and (force_reload or slot.status is not ModelStatus.LOADED)

    def request(self, slot: ModelSlot, force_reload: bool, timeout_s: float) -> LoadJob:
        """Start a load, or join the one in flight; a loaded model without force gets a completed job."""
        while True:
            slot.unloaded.wait()  # an unload in progress finishes before a new load starts
            with slot.lock:
                if slot.status is ModelStatus.UNLOADING:
                    continue
                if slot.job is not None and not slot.job.done.is_set():
                    return slot.job
                job = LoadJob(slot.model_id, timeout_s, force_reload)
                self._jobs.add(job)
                if slot.status is ModelStatus.LOADED and not force_reload:
                    job.start()
                    job.finish(JobStatus.COMPLETED)
                    return job
                slot.job = job
                job.start()
                slot.transition(ModelStatus.LOADING, "force_reload" if force_reload else "load requested")
                slot.last_error = None
            threading.Thread(target=self._drive, args=(slot, job), name=f"load-{slot.model_id}",
                             daemon=True).start()
            return job

    def _drive(self, slot: ModelSlot, job: LoadJob) -> None:
        deadline = time.monotonic() + job.timeout_s
        config = slot.config
        try:
            worker = self._spawner.spawn(slot.model_id, config.source, config.device, config.threads,
                                         self._on_exit)
        except Exception as exc:
            log.exception("model %s: could not start a process", slot.model_id)
            self._finish(slot, job, None, None, ("LOAD_FAILED", f"could not start a model process: {exc}",
                                                 "see the server log"))
            return
        with slot.lock:
            slot.candidate = worker
            cancelled = job.cancel_requested
        log.info("model %s: process %d spawned (source %s)", slot.model_id, worker.pid, config.source)
        ready, failure = (None, None) if cancelled else self._await_ready(worker, job, deadline)
        if ready is None:
            self._spawner.discard(worker)
        self._finish(slot, job, worker if ready else None, ready, failure)

    def _await_ready(self, worker: WorkerHandle, job: LoadJob,
                     deadline: float) -> tuple[Ready | None, Failure | None]:
        try:
            return worker.ready.result(timeout=max(0.0, deadline - time.monotonic())), None
        except FutureTimeout:
            return None, ("LOAD_TIMEOUT", f"model not ready within its {job.timeout_s:g} s timeout; "
                                          "its process was killed",
                          "raise `timeout`, or check that the model source is reachable and the right size")
        except LoadFailedError as exc:
            return None, ("LOAD_FAILED", exc.reason, exc.hint)
        except WorkerExited as exc:
            return None, ("LOAD_FAILED", f"model process {exc} while loading",
                          "see the server log; a process killed while loading may have run out of memory")

    def _finish(self, slot: ModelSlot, job: LoadJob, worker: WorkerHandle | None, ready: Ready | None,
                failure: Failure | None) -> None:
        retired = None
        with slot.lock:
            slot.candidate = None
            if job.cancel_requested:
                self._settle(slot, "load cancelled")
                outcome = (JobStatus.CANCELLED, "CONFLICT", "load cancelled by an unload request",
                           "the model was unloaded while it loaded; load it again if it is still needed")
            elif failure is not None:
                code, message, details = failure
                slot.last_error = message
                self._settle(slot, f"load failed: {code}", failed=True)
                outcome = (JobStatus.FAILED, code, message, details)
            else:
                retired, slot.worker = slot.worker, worker
                self._record_ready(slot, ready)
                slot.transition(ModelStatus.LOADED, f"ready in {ready.timings.total_ms:.0f} ms")
                outcome = (JobStatus.COMPLETED,)
        if ready is not None:
            self._on_loaded(slot)
        if retired is not None:  # stopped before the job ends, so no later load can overlap it
            log.info("model %s: stopping replaced process %d", slot.model_id, retired.pid)
            self._spawner.stop(retired, self._stop_grace_s)
        with slot.lock:
            job.finish(*outcome)
            slot.job = None

    @staticmethod
    def _settle(slot: ModelSlot, reason: str, failed: bool = False) -> None:
        """After a load that did not complete: a force_reload falls back to the process still serving."""
        if slot.worker is not None:
            slot.transition(ModelStatus.LOADED, f"{reason}; previous process still serving")
        else:
            slot.transition(ModelStatus.FAILED if failed else ModelStatus.UNLOADED, reason)

    @staticmethod
    def _record_ready(slot: ModelSlot, ready: Ready) -> None:
        slot.timings = ready.timings
        slot.load_time_ms = ready.timings.total_ms
        slot.resolved_source = ready.resolved_source
        slot.loads += 1
        slot.cache_hits += int(ready.source_was_cached)
        log.info("model %s: loaded by pid %d in %.0f ms (weights %.0f ms, warm-up %.0f ms), RSS %.1f MB",
                 slot.model_id, ready.pid, ready.timings.total_ms, ready.timings.weights_ms,
                 ready.timings.warmup_ms, rss_mb(ready.pid))
