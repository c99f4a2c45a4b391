"""What the arbiter's parts share besides the model table: whether readers need a new snapshot, the recent
load jobs, and whether the server is closing. Arbiter thread only."""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from supervisor.arbiter.loop import Loop
from supervisor.jobs import LoadGroup, LoadJob

KEEP_JOBS = 512


class Board:
    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self.closing = False
        self.jobs: OrderedDict[str, LoadJob | LoadGroup] = OrderedDict()
        self.dirty = True
        self.dirty_jobs: set[LoadJob | LoadGroup] = set()

    def changed(self, job: LoadJob | LoadGroup | None = None) -> None:
        """Something readers can see changed: publish at the end of this turn."""
        self.dirty = True
        if job is not None:
            self.dirty_jobs.add(job)
            if isinstance(job, LoadJob):
                self.dirty_jobs.update(job.groups)

    def settle(self, future: Future, result: Any = None, error: BaseException | None = None) -> None:
        """Answer a caller after this turn's snapshot is published."""
        self._loop.settle(future, result, error)

    def remember(self, job: LoadJob | LoadGroup) -> None:
        self.jobs[job.load_id] = job
        while len(self.jobs) > KEEP_JOBS:
            self.jobs.popitem(last=False)
        self.changed(job)
