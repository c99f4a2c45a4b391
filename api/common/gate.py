"""Thread admission: routes that hold a waitress thread for long (inference, sync loads, unloads) may use only
part of the thread pool, so the control routes (`/healthz`, `/readyz`, `/model/info`, `/metrics`, job status)
always find a free thread. Past the limit a slow request is refused at once with OVERLOADED."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from wire.errors import ErrorCode, SupervisorError


class ThreadGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def admit(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise SupervisorError(ErrorCode.OVERLOADED, "Server is busy",
                                  f"all {self.limit} threads for model work are busy; retry shortly, or raise "
                                  "[server] http_threads", retry_after_s=1)
        try:
            yield
        finally:
            self._slots.release()
