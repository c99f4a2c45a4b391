"""Load jobs: what `load_id` names. A job is one model's load; a group is `model_type: "all"`."""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone


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
    """One model's load. Mutated only under its slot's lock; `done` lets any thread wait for the end."""

    def __init__(self, model_id: str, timeout_s: float, force_reload: bool) -> None:
        self.load_id = new_load_id()
        self.model_id = model_id
        self.timeout_s = timeout_s
        self.force_reload = force_reload
        self.status = JobStatus.PENDING
        self.created_at = utc_now()
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.error_code: str | None = None
        self.error: str | None = None
        self.details: str | None = None
        self.cancel_requested = False
        self.phase = "queued"           # what the load is doing now, as its process reports it
        self.done = threading.Event()

    def start(self) -> None:
        self.status, self.started_at, self.phase = JobStatus.LOADING, utc_now(), "starting a process"

    def finish(self, status: JobStatus, error_code: str | None = None, error: str | None = None,
               details: str | None = None) -> None:
        self.status, self.finished_at, self.phase = status, utc_now(), status.value
        self.error_code, self.error, self.details = error_code, error, details
        self.done.set()

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

    @property
    def status(self) -> JobStatus:
        statuses = {job.status for job in self.jobs}
        for status in (JobStatus.FAILED, JobStatus.CANCELLED):
            if status in statuses and statuses <= FINISHED:
                return status
        if statuses == {JobStatus.COMPLETED}:
            return JobStatus.COMPLETED
        return JobStatus.LOADING if JobStatus.LOADING in statuses else JobStatus.PENDING


class JobRegistry:
    """Recent jobs by id, bounded so a long-running server does not grow without limit."""

    def __init__(self, keep: int = 512) -> None:
        self._jobs: OrderedDict[str, LoadJob | LoadGroup] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def add(self, job: LoadJob | LoadGroup) -> None:
        with self._lock:
            self._jobs[job.load_id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)

    def get(self, load_id: str) -> LoadJob | LoadGroup | None:
        with self._lock:
            return self._jobs.get(load_id)
