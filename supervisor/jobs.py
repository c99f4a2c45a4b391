"""Load jobs: what `load_id` names. A job is one model's load; a group is `model_type: "all"`.

Jobs are changed only on the arbiter thread; callers wait on `future` and read the published `JobView`s.
"""

from __future__ import annotations

import enum
import itertools
import time
from concurrent.futures import Future
from datetime import datetime, timezone

from supervisor.timer import Timer
from wire.errors import ErrorCode, SupervisorError


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    LOADING = "loading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
_ids = itertools.count(1)


def new_load_id() -> str:
    return f"load_{int(time.time() * 1000)}{next(_ids):04d}"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class LoadJob:
    """One model's load; `future` resolves (to None) when it ends, whatever the outcome."""

    def __init__(self, model_id: str, timeout_s: float, force_reload: bool) -> None:
        self.load_id = new_load_id()
        self.model_id = model_id
        self.timeout_s = timeout_s
        self.force_reload = force_reload
        self.status = JobStatus.PENDING
        self.created_at = utc_now()
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.error_code: ErrorCode | None = None
        self.error: str | None = None
        self.details: str | None = None
        self.context: dict = {}         # extra error fields, such as needed_mb and free_mb
        self.phase = "queued"           # what the load is doing now, as its process reports it
        self.generation = 0             # the replica set this load starts
        self.deadline: Timer | None = None   # the arbiter's Timer for `timeout_s`
        self.groups: list[LoadGroup] = []
        self.future: Future = Future()

    @property
    def done(self) -> bool:
        return self.status in FINISHED

    def start(self, generation: int) -> None:
        self.status, self.started_at, self.phase = JobStatus.LOADING, utc_now(), "starting a process"
        self.generation = generation

    def finish(self, status: JobStatus, error_code: ErrorCode | None = None, error: str | None = None,
               details: str | None = None, **context) -> None:
        self.status, self.finished_at, self.phase = status, utc_now(), status.value
        self.error_code, self.error, self.details, self.context = error_code, error, details, context
        if self.deadline is not None:
            self.deadline.cancel()

    def elapsed_ms(self) -> float:
        start = self.started_at or self.created_at
        end = self.finished_at or utc_now()
        return (end - start).total_seconds() * 1000


class LoadGroup:
    """`model_type: "all"`: one id over one job per model; its status is derived from theirs."""

    def __init__(self, jobs: list[LoadJob]) -> None:
        self.load_id = new_load_id()
        self.jobs = jobs
        self.created_at = min(job.created_at for job in jobs)
        for job in jobs:
            job.groups.append(self)

    @property
    def done(self) -> bool:
        return all(job.done for job in self.jobs)

    @property
    def status(self) -> JobStatus:
        statuses = {job.status for job in self.jobs}
        for status in (JobStatus.FAILED, JobStatus.CANCELLED):
            if status in statuses and statuses <= FINISHED:
                return status
        if statuses == {JobStatus.COMPLETED}:
            return JobStatus.COMPLETED
        return JobStatus.LOADING if JobStatus.LOADING in statuses else JobStatus.PENDING


def job_error(job: LoadJob) -> SupervisorError:
    return SupervisorError(job.error_code or ErrorCode.LOAD_FAILED, f"Loading {job.model_id} failed: {job.error}",
                           job.details or "", **{"model_type": job.model_id, "load_id": job.load_id, **job.context})
