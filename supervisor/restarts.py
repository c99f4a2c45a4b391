"""Restarting crashed models: exponential backoff within a budget, so a model that keeps dying stops trying."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


class RestartPolicy:
    """Per model: delays 1 s, 2 s, 4 s ... up to `max_delay_s`; at most `budget` restarts per `window_s`.
    Used only on the arbiter thread."""

    def __init__(self, budget: int, window_s: float, max_delay_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.budget = budget
        self.window_s = window_s
        self.max_delay_s = max_delay_s
        self._history: dict[str, deque[float]] = {}

    def next_delay(self, model_id: str) -> float | None:
        """The delay before the next restart, counted now; None once the budget for the window is spent."""
        now = self.clock()
        history = self._history.setdefault(model_id, deque())
        while history and now - history[0] > self.window_s:
            history.popleft()
        if len(history) >= self.budget:
            return None
        delay = min(2.0 ** len(history), self.max_delay_s)
        history.append(now)
        return delay

    def seconds_until_allowed(self, model_id: str) -> float:
        history = self._history.get(model_id)
        return max(0.0, history[0] + self.window_s - self.clock()) if history else 0.0
