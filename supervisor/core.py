"""The Supervisor: the typed facade the API calls from any thread.

It owns no lifecycle state: each call runs an operation on the arbiter thread and waits on a Future with a
deadline; reads (`snapshot`, `job`, `view`) take the latest snapshot the arbiter published.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable

import msgspec

from model_procs.sources import sweep_abandoned_generations
from supervisor.arbiter.arbiter import Arbiter
from supervisor.catalog import pick_model, resolve
from supervisor.kinds import funasr_version
from supervisor.config import Config, ConfigError
from wire.errors import ErrorCode, SupervisorError, shown
from supervisor.arbiter.housekeeping import preload_order
from supervisor.jobs import LoadGroup, job_error
from supervisor.arbiter.loop import resolve as resolve_future
from supervisor.registry import decode_model_config
from supervisor.snapshot import Snapshot, system_info
from supervisor.spawner import ForkserverSpawner, Spawner
from supervisor.orders import Order
from wire.views import JobView, ModelView, SystemInfo, UnloadView

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 30.0   # an operation itself returns at once; this only catches a wedged arbiter


class Capacity(msgspec.Struct, frozen=True):
    """What the admission rules say now: memory free for models, and what one more process of each would need
    (a fleet places loads by it)."""

    free_mb: float
    need_mb: dict[str, float]


class LoadTicket(msgspec.Struct, frozen=True):
    """What a load request started: its id, and the jobs to wait on (read only once they are done)."""

    load_id: str
    model_type: str
    completed: bool
    estimated_ms: int
    load_ids: dict[str, str] | None
    jobs: list[Any]


class Supervisor:
    def __init__(self, config: Config, cache_dir: Path, stop_grace_s: float = 2.0, log_format: str = "text",
                 spawner: Spawner | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.version = funasr_version()
        self.settings = config.server
        self._spawner = spawner or ForkserverSpawner()
        self.arbiter = Arbiter(config, self.cache_dir, self._spawner, stop_grace_s, log_format, self.version,
                               self.started_at)
        self.loop = self.arbiter.loop
        self.metrics = self.arbiter.metrics
        self._ops = self.arbiter.operations
        self._stop_grace_s = stop_grace_s
        self._started = False
        self._closed = False

    # -- life of the supervisor itself -------------------------------------------------------------
    def start(self) -> None:
        """Start the arbiter now and the forkserver in the background (it preloads torch+funasr: seconds)."""
        self._started = True
        self.arbiter.start()
        threading.Thread(target=self._boot, name="supervisor-boot", daemon=True).start()

    def _boot(self) -> None:
        log.info("forkserver: booting with torch and funasr preloaded")
        log.info("forkserver: ready in %.1f s", self._spawner.boot())
        for model_id in preload_order(self.arbiter.models):
            log.info("preload: loading %s", model_id)
            try:
                self.await_load(self.request_load(model_id, timeout_s=self.settings.load_timeout_s))
            except SupervisorError as exc:
                log.log(logging.ERROR if self.arbiter.models[model_id].config.required else logging.WARNING,
                        "preload: model %s failed: %s (%s)", model_id, exc.message, exc.details)

    def close(self) -> None:
        """Refuse new work, let requests in flight finish (up to drain_timeout_s), unload every model, stop
        the arbiter and the forkserver. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                self._wait(self._call(self._ops.close), self._unload_backstop_s())
        except SupervisorError as exc:
            log.error("supervisor: shutdown did not finish cleanly: %s", exc.message)
        finally:
            self.loop.stop()
            self._spawner.shutdown()
            sweep_abandoned_generations(str(self.cache_dir))  # a load cancelled mid-generation left its copy
        log.info("supervisor: closed")

    def is_alive(self) -> bool:
        return self.loop.is_alive()

    # -- reads: the published snapshot --------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return self.arbiter.snapshot

    def view(self, model_id: str) -> ModelView:
        return self.snapshot.models[model_id]

    def missing_required(self) -> list[str]:
        """Required models that are not loaded: what /readyz reports."""
        models = self.snapshot.models
        return [m for m, view in models.items() if view.required and view.status != "loaded"]

    def resolve(self, model_type: str, allow_all: bool = True) -> list[str]:
        return resolve(model_type, list(self.snapshot.models), allow_all)

    def job(self, load_id: str) -> JobView:
        view = self.snapshot.jobs.get(load_id)
        if view is None:
            raise SupervisorError(ErrorCode.LOAD_NOT_FOUND, "Load not found",
                                  f"No load with id '{shown(load_id)}' is known (ids are kept for the last 512 loads)")
        if view.finished_at is None and view.started_at is not None:  # elapsed is live, the rest as published
            return msgspec.structs.replace(view, elapsed_ms=round((time.time() - view.started_at.timestamp())
                                                                  * 1000, 1))
        return view

    # -- lifecycle ------------------------------------------------------------------------------------
    def request_load(self, model_type: str, force_reload: bool = False, timeout_s: float = 300.0) -> LoadTicket:
        """Start (or join) the load of one model or of `all`; returns at once with what to wait on."""
        def start() -> LoadTicket:
            job = self._ops.load(model_type, force_reload, timeout_s)
            jobs = job.jobs if isinstance(job, LoadGroup) else [job]
            return LoadTicket(load_id=job.load_id, model_type=model_type, completed=job.done and not any(
                j.error_code for j in jobs), estimated_ms=max(
                    self.arbiter.models[j.model_id].estimated_load_ms() for j in jobs),
                load_ids={j.model_id: j.load_id for j in jobs} if isinstance(job, LoadGroup) else None, jobs=jobs)
        return self._call(start)

    def await_load(self, ticket: LoadTicket) -> None:
        """Block until every job of the ticket ends; raise the first error if one did not complete."""
        for job in ticket.jobs:
            self._wait(job.future, job.timeout_s + 30)
        for job in ticket.jobs:
            if job.error_code:
                raise job_error(job)

    def unload(self, model_type: str) -> UnloadView:
        """Stop the model's processes (drain, ask → SIGTERM → SIGKILL) and report what that returned."""
        return self._wait(self._call(lambda: self._ops.unload(model_type)), self._unload_backstop_s())

    def system_info(self) -> SystemInfo:
        return system_info(self.started_at)

    def nodes(self) -> dict[str, SystemInfo]:
        """One box: no nodes of its own (a fleet's facade answers each of its machines)."""
        return {}

    def capacity(self) -> Capacity:
        admission = self.arbiter.admission
        return self._call(lambda: Capacity(free_mb=round(admission.free_mb(), 1), need_mb={
            m: round(admission.need_mb(model), 1) for m, model in self.arbiter.models.items()}))

    # -- the registry -----------------------------------------------------------------------------------
    def register(self, name: str, config_json: str | bytes) -> bool:
        """Register (or replace a stopped) model from its JSON settings; True when it replaced one."""
        try:
            config = decode_model_config(name, config_json)
        except ConfigError as exc:
            raise SupervisorError(ErrorCode.INVALID_REQUEST, "Bad model config", str(exc)) from None
        return self._call(lambda: self._ops.register(name, config))

    def forget(self, name: str) -> None:
        self._call(lambda: self._ops.forget(name))

    # -- which model a route uses ---------------------------------------------------------------------
    def model_for(self, kinds: tuple[str, ...], requested: str | None = None) -> str:
        """`requested` if it is a model of one of `kinds`, else the default model of the first kind that has one."""
        return pick_model({m: v.kind for m, v in self.snapshot.models.items()}, kinds, requested)

    def has_model(self, kind: str) -> bool:
        return any(view.kind == kind for view in self.snapshot.models.values())

    # -- work -------------------------------------------------------------------------------------------
    def submit(self, *orders: Order) -> list[Future]:
        """Hand orders to the arbiter in one turn, without waiting: each Future gets its answer (or error), set
        after the snapshot of that change is published. The flows own the waiting and its deadlines."""
        answers: list[Future] = [Future() for _ in orders]

        def start() -> None:
            for order, answer in zip(orders, answers):
                try:
                    started = self._ops.start(order)
                except Exception as exc:  # a refusal (no such model or stream, too much audio): its Future says so
                    self.loop.settle(answer, error=exc)
                    continue
                if isinstance(started, Future):
                    started.add_done_callback(functools.partial(copy_outcome, answer=answer))
                else:
                    self.loop.settle(answer, started)
        self.loop.post(start)
        return answers

    def where(self) -> str:
        """The arbiter thread's stack: what a caller that gave up waiting logs."""
        return self.loop.where()

    # -- waiting on commands -----------------------------------------------------------------------------
    def _unload_backstop_s(self) -> float:
        return self.settings.drain_timeout_s + 3 * self._stop_grace_s + 30

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self._wait(self.loop.call(fn), COMMAND_TIMEOUT_S)

    def _wait(self, future: Future, timeout_s: float) -> Any:
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            log.error("supervisor: no answer within %.0f s; the arbiter is at:\n%s", timeout_s, self.where())
            raise SupervisorError(ErrorCode.INTERNAL, "The supervisor did not answer in time",
                                  "the server logged it; please report it") from None


def copy_outcome(done: Future, answer: Future) -> None:
    """An arbiter Future's result or error onto the caller's (already settled after the snapshot)."""
    error = done.exception()
    resolve_future(answer, None if error else done.result(), error)
