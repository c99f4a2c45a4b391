"""Loading and unloading models, on the arbiter thread: jobs, force_reload, cancel, restarts, eviction.

A load starts a new replica set (`generation`); dispatch switches to it when its first process is ready, and the
replaced set drains (its streams finish there, up to `drain_timeout_s`) before the job ends. A load that cannot
start yet (an unload in progress, memory being freed by an eviction) waits as a `pending` job.

Lifecycle is the one part that calls down into the others (Replicas, the Dispatcher, Admission); it is told
about processes through the events the arbiter routes to it, and it carries out every kill (`kill`, decided by
`kills.kill_reason`).
"""

from __future__ import annotations

import logging
from typing import Callable

from supervisor import page_cache
from supervisor.arbiter.admission import Admission
from supervisor.arbiter.board import Board
from supervisor.arbiter.dispatch import Dispatcher
from supervisor.arbiter.draining import Drainer
from supervisor.arbiter.events import KillFact, LoadTimedOut
from supervisor.arbiter.kills import kill_reason
from supervisor.arbiter.loop import Loop
from supervisor.arbiter.replicas import Replicas
from supervisor.config import ServerSettings
from supervisor.jobs import JobStatus, LoadJob, job_error
from supervisor.replica import Model, Replica
from supervisor.restarts import RestartPolicy
from supervisor.states import ModelStatus
from supervisor.work import Work
from wire.errors import ErrorCode, SupervisorError

log = logging.getLogger(__name__)

SCALE_RETRY_S = 10.0  # a replica that failed to start blocks scaling up for this long
UnloadDone = Callable[[float, bool], None]  # (MB freed, whether it was loaded)


class UnloadWaiter:
    """One unload call: done once the processes that existed when it was asked are gone."""

    def __init__(self, done: UnloadDone, was_loaded: bool, pending: set[Replica]) -> None:
        self.done, self.was_loaded, self.pending, self.freed_mb = done, was_loaded, pending, 0.0


class Lifecycle:
    def __init__(self, loop: Loop, replicas: Replicas, drainer: Drainer, dispatch: Dispatcher, admission: Admission,
                 restart_policy: RestartPolicy, board: Board, settings: ServerSettings) -> None:
        self.loop, self.replicas, self.drainer, self.dispatch = loop, replicas, drainer, dispatch
        self.admission, self.restart_policy, self.board, self.settings = admission, restart_policy, board, settings
        self.awaiting_memory: set[Model] = set()

    # -- load ----------------------------------------------------------------------------------------
    def load(self, model: Model, force_reload: bool, timeout_s: float) -> LoadJob:
        """Start a load, or join the one in flight; a loaded model (without force) gets a completed job."""
        if self.board.closing:
            raise SupervisorError(ErrorCode.CONFLICT, "Server is shutting down", "retry against a running server")
        if model.job is not None:
            return model.job
        job = LoadJob(model.model_id, timeout_s, force_reload)
        self.board.remember(job)
        if model.status is ModelStatus.LOADED and not force_reload:
            job.start(model.generation)
            self._end_job(model, job, JobStatus.COMPLETED)
            return job
        model.job = job
        self._begin(model)
        return job

    def _begin(self, model: Model) -> None:
        job = model.job
        assert job is not None   # a model is begun only for its load in flight
        self.awaiting_memory.discard(model)
        if model.status is ModelStatus.UNLOADING:
            job.phase = "waiting for an unload to finish"
            return
        try:
            victims = self.admission.admit(model)
        except SupervisorError as exc:
            self._fail(model, job, exc.code, exc.message, exc.details, **exc.context)
            return
        if victims:
            for victim in victims:
                log.warning("memory: evicting idle model %s to fit %s", victim.model_id, model.model_id)
                victim.evictions += 1
                self.unload(victim, "evicted to free memory for another model", lambda *_: None)
            job.phase = f"waiting for memory: evicting {', '.join(v.model_id for v in victims)}"
            self.awaiting_memory.add(model)
            self.board.changed(job)
            return
        job.start(next(model.generations))
        model.transition(ModelStatus.LOADING, "force_reload" if job.force_reload else "load requested")
        self.replicas.start(model, job.generation)
        job.deadline = self.loop.call_later(job.timeout_s, lambda: self._timed_out(model, job), model.model_id)
        self.board.changed(job)

    def cold_start(self, model: Model, work: Work) -> None:
        """A request found the model not serving: load it (autoload), and the request waits in the queue."""
        if not model.config.autoload and model.job is None:
            estimate = model.estimated_load_ms() // 1000
            raise SupervisorError(ErrorCode.MODEL_NOT_READY, f"Model {model.model_id} is not loaded",
                                  f"load it first (POST /model/load), or set autoload for {model.model_id}",
                                  model_type=model.model_id, retry_after_s=max(1, estimate))
        self._load_for_request(model)
        work.cold_start = True
        model.usage.cold_starts += 1

    def _load_for_request(self, model: Model) -> None:
        """Within the restart budget if it had failed."""
        if model.job is not None or model.restart_timer is not None:
            return  # a load or a restart is on its way; the request waits in the queue
        if model.status is ModelStatus.FAILED:
            if self.restart_policy.next_delay(model.model_id) is None:
                wait_s = self.restart_policy.seconds_until_allowed(model.model_id)
                raise SupervisorError(ErrorCode.MODEL_NOT_READY, f"Model {model.model_id} failed: {model.last_error}",
                                      f"its restart budget is spent; retry in {wait_s:.0f} s, or load it "
                                      "explicitly (POST /model/load)", model_type=model.model_id,
                                      retry_after_s=max(1, int(wait_s)))
            model.restarts += 1
        job = self.load(model, False, self.settings.load_timeout_s)
        if job.done and job.error_code:
            raise job_error(job)

    def on_progress(self, model: Model, replica: Replica, phase: str) -> None:
        job = model.job
        if job is not None and not job.done and replica.generation == job.generation:
            job.phase = phase
            self.board.changed(job)

    def on_replica_ready(self, model: Model, replica: Replica) -> None:
        self.admission.footprints.record(model, replica.unique_mb, model.weights_mb)
        job = model.job
        if job is not None and job.status is JobStatus.LOADING and replica.generation == job.generation:
            self._switch(model, job)
        self.dispatch.pump(model)

    def scale_up(self, model: Model, waited_ms: float) -> None:
        log.info("model %s: scaling up to %d replicas (oldest request waited %.0f ms)", model.model_id,
                 len(model.current()) + 1, waited_ms)
        self.replicas.start(model, model.generation)

    def kill(self, fact: KillFact) -> None:
        """Carry out the verdict on a fact about a process: the only place the supervisor kills on its own."""
        reason = kill_reason(fact)
        if reason is not None:
            log.warning("model %s: killing pid %d: %s", fact.model.model_id, fact.replica.pid, reason)
            fact.replica.kill(reason)

    def fail_hard(self, model: Model, error: BaseException) -> None:
        """Code working on `model` raised: its state can no longer be trusted half-way through a change, so it
        fails loudly (processes killed, queue and load answered) and every other model serves on."""
        reason = f"internal error: {type(error).__name__}: {error}"
        log.error("model %s: %s; it is marked failed", model.model_id, reason, exc_info=error)
        model.last_error = reason
        model.fail_now(reason)
        for replica in model.replicas:
            replica.stopping = True
            replica.kill(reason)
        if model.job is not None:
            self._end_job(model, model.job, JobStatus.FAILED, ErrorCode.INTERNAL, reason, "see the server log")
        self.dispatch.fail_queue(model, lambda: SupervisorError(
            ErrorCode.INTERNAL, f"Model {model.model_id} failed: {reason}", "see the server log; load it again"))
        self.board.changed()

    def _switch(self, model: Model, job: LoadJob) -> None:
        """The new set serves from now on; the replaced one drains, and the job ends when it is gone."""
        replaced = [r for r in model.replicas if r.generation != job.generation and not r.stopping]
        model.generation = job.generation
        model.transition(ModelStatus.LOADED, f"ready in {model.load_time_ms:.0f} ms")
        if job.deadline is not None:
            job.deadline.cancel()
        if not replaced:
            self._end_job(model, job, JobStatus.COMPLETED)
            return
        job.phase = "draining the replaced processes"
        self.board.changed(job)

        def one_gone(_: Replica) -> None:
            if not any(r in model.replicas for r in replaced) and not job.done:
                self._end_job(model, job, JobStatus.COMPLETED)
        for old in replaced:
            self.drainer.retire(model, old, "replaced by force_reload", keep_streams=True, then=one_gone)

    def _timed_out(self, model: Model, job: LoadJob) -> None:
        if job.status is not JobStatus.LOADING or model.generation == job.generation:
            return
        for replica in [r for r in model.replicas if r.generation == job.generation]:
            self.kill(LoadTimedOut(model, replica, job.timeout_s))
            self.replicas.stop(replica, "load timed out")
        self._fail(model, job, ErrorCode.LOAD_TIMEOUT,
                   f"model not ready within its {job.timeout_s:g} s timeout; its process was killed",
                   "raise `timeout`, or check that the model source is reachable and the right size")

    def _fail(self, model: Model, job: LoadJob, code: ErrorCode, message: str, details: str,
              status: JobStatus = JobStatus.FAILED, **context) -> None:
        if status is JobStatus.FAILED:
            model.last_error = message
        if model.status is ModelStatus.LOADING:
            self._settle(model, f"load {status.value}: {code}", failed=status is JobStatus.FAILED)
        self._end_job(model, job, status, code, message, details, **context)
        if not model.serving():
            error = job_error(job)
            self.dispatch.fail_queue(model, lambda: error)

    @staticmethod
    def _settle(model: Model, reason: str, failed: bool) -> None:
        """After a load that did not complete: a force_reload falls back to the set still serving."""
        if model.serving():
            model.transition(ModelStatus.LOADED, f"{reason}; previous process still serving")
        else:
            model.transition(ModelStatus.FAILED if failed else ModelStatus.UNLOADED, reason)

    def _end_job(self, model: Model, job: LoadJob, status: JobStatus, *error, **context) -> None:
        job.finish(status, *error, **context)
        if model.job is job:
            model.job = None
        self.awaiting_memory.discard(model)
        self.board.settle(job.future)
        self.board.changed(job)

    # -- processes that end ----------------------------------------------------------------------------
    def on_replica_gone(self, model: Model, replica: Replica) -> None:
        reason = f"model process {replica.pid} {replica.describe_exit()}"
        self.dispatch.fail_replica(model, replica, reason)
        if not replica.stopping:
            self._on_unexpected_exit(model, replica, reason)
        self._check_unloaded(model, replica)
        for callback in replica.on_exit:
            callback(replica)

    def _on_unexpected_exit(self, model: Model, replica: Replica, reason: str) -> None:
        job = model.job
        if not replica.ready:
            if job is not None and job.status is JobStatus.LOADING and replica.generation == job.generation:
                message, hint = replica.load_failure or (
                    f"{reason} while loading", "see the server log; a process killed while loading may have "
                                               "run out of memory")
                self._fail(model, job, ErrorCode.LOAD_FAILED, message, hint)
            else:
                model.last_error = f"a new replica did not start: {(replica.load_failure or (reason,))[0]}"
                model.scale_blocked_until = self.loop.now() + SCALE_RETRY_S
            return
        model.last_error = reason
        log.error("model %s: %s", model.model_id, reason)
        if model.serving() or model.status is not ModelStatus.LOADED:
            return  # other replicas serve on, or a force_reload's new set is on its way
        model.transition(ModelStatus.FAILED, reason)
        model.crashes += 1
        if (model.config.required or replica.kill_reason) and not self.board.closing:
            self._schedule_restart(model)

    def _schedule_restart(self, model: Model) -> None:
        delay = self.restart_policy.next_delay(model.model_id)
        if delay is None:
            log.error("model %s: restart budget spent (%d in %.0f s); it stays failed", model.model_id,
                      self.restart_policy.budget, self.restart_policy.window_s)
            return
        log.warning("model %s: restarting in %.1f s", model.model_id, delay)
        crash = model.crashes
        model.restart_timer = self.loop.call_later(delay, lambda: self._restart(model, crash), model.model_id)

    def _restart(self, model: Model, crash: int) -> None:
        model.restart_timer = None
        if model.status is not ModelStatus.FAILED or model.crashes != crash or self.board.closing:
            return
        model.restarts += 1
        job = self.load(model, False, self.settings.load_timeout_s)
        if job.done and job.error_code:
            log.error("model %s: restart refused: %s (%s)", model.model_id, job.error, job.details)

    # -- unload --------------------------------------------------------------------------------------
    def unload(self, model: Model, reason: str, done: UnloadDone) -> None:
        """Cancel a load in flight, drain in-flight requests, answer queued ones, stop every replica; `done`
        runs once every process that existed now is gone (not ones a later load starts)."""
        self._cancel_load(model)
        if model.restart_timer is not None:
            model.restart_timer.cancel()
            model.restart_timer = None
        if model.status is ModelStatus.FAILED:
            model.transition(ModelStatus.UNLOADED, reason)
        if model.status is ModelStatus.LOADED:
            model.transition(ModelStatus.UNLOADING, reason)
            self.dispatch.fail_queue(model, lambda: SupervisorError(
                ErrorCode.MODEL_NOT_READY, f"Model {model.model_id} was unloaded", "load it again, or retry (autoload)",
                model_type=model.model_id, retry_after_s=1))
        model.unload_waiters.append(UnloadWaiter(done, model.status is ModelStatus.UNLOADING, set(model.replicas)))
        for replica in [r for r in model.replicas if not r.stopping]:
            self.drainer.retire(model, replica, reason, keep_streams=False)
        self._check_unloaded(model)

    def _cancel_load(self, model: Model) -> None:
        job = model.job
        if job is None or (job.status is JobStatus.LOADING and model.generation == job.generation):
            return  # nothing in flight, or a force_reload already switched: its old set is being stopped
        if job.status is JobStatus.LOADING:
            for replica in [r for r in model.replicas if r.generation == job.generation]:
                self.replicas.stop(replica, "load cancelled")
        self._fail(model, job, ErrorCode.CONFLICT, "load cancelled by an unload request",
                   "the model was unloaded while it loaded; load it again if it is still needed",
                   status=JobStatus.CANCELLED)

    def _check_unloaded(self, model: Model, gone: Replica | None = None) -> None:
        for waiter in model.unload_waiters:
            if gone is not None and gone in waiter.pending:
                waiter.pending.discard(gone)
                waiter.freed_mb += gone.unique_mb
        if model.status is ModelStatus.UNLOADING and not model.replicas:
            model.transition(ModelStatus.UNLOADED, "every process stopped")
            if model.job is not None and model.job.status is JobStatus.PENDING:
                self._begin(model)
            for waiting in list(self.awaiting_memory):
                if waiting.job is not None:
                    self._begin(waiting)
        finished = [w for w in model.unload_waiters if not w.pending]
        model.unload_waiters = [w for w in model.unload_waiters if w.pending]
        if finished and self._drops_weights(model):
            paths = model.weights_files
            self.loop.offload(lambda: page_cache.drop(*paths),
                              lambda dropped, _: self._weights_dropped(model, finished, dropped or 0.0), model.model_id)
            return
        self._answer_unloads(finished, 0.0)

    @staticmethod
    def _drops_weights(model: Model) -> bool:
        """The last process of a mapped model is gone, no load follows at once and keep_warm is off: its
        weights leave the page cache too, so the unload gives back all it took."""
        return (bool(model.weights_files) and not model.replicas and model.job is None
                and not model.config.keep_warm and model.weights_mb > 0)

    def _weights_dropped(self, model: Model, finished: list[UnloadWaiter], dropped_mb: float) -> None:
        log.info("model %s: dropped %.1f MB of mapped weights from the page cache", model.model_id, dropped_mb)
        model.weights_mb = 0.0
        self._answer_unloads(finished, dropped_mb)
        self.board.changed()

    @staticmethod
    def _answer_unloads(finished: list[UnloadWaiter], weights_mb: float) -> None:
        for waiter in finished:
            waiter.done(round(waiter.freed_mb + weights_mb, 1) if waiter.was_loaded else 0.0, waiter.was_loaded)
