"""Restarting crashed models: exponential backoff within a budget, so a model that keeps dying stops trying."""

from __future__ import annotations

import threading
import time
from collections import deque


class RestartPolicy:
    """Per model: delays 1 s, 2 s, 4 s ... up to `max_delay_s`; at most `budget` restarts per `window_s`."""

    def __init__(self, budget: int, window_s: float, max_delay_s: float) -> None:
        self.budget = budget
        self.window_s = window_s
        self.max_delay_s = max_delay_s
        self._history: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def next_delay(self, model_id: str) -> float | None:
        """The delay before the next restart, counted now; None once the budget for the window is spent."""
        now = time.monotonic()
        with self._lock:
            history = self._history.setdefault(model_id, deque())
            while history and now - history[0] > self.window_s:
                history.popleft()
            if len(history) >= self.budget:
                return None
            delay = min(2.0 ** len(history), self.max_delay_s)
            history.append(now)
            return delay
