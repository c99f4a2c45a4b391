"""Per-model request accounting: counts by outcome, latency percentiles, last use, work in flight."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from datetime import datetime

import msgspec

from supervisor.jobs import utc_now

LATENCY_WINDOW = 2048  # percentiles over the most recent requests
NOT_SERVED = frozenset({"invalid", "unavailable"})


class LatencyPercentiles(msgspec.Struct, frozen=True):
    p50_ms: float
    p95_ms: float
    p99_ms: float


class UsageStats:
    """Thread-safe. `in_flight` and `streams` are what idle unloading must respect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.last_used: datetime | None = None
        self.last_used_monotonic = time.monotonic()
        self.in_flight = 0
        self.cold_starts = 0
        self.idle_unloads = 0
        self.evictions = 0

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.last_used_monotonic = time.monotonic()

    def end(self, outcome: str, latency_ms: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.outcomes[outcome] += 1
            if outcome not in NOT_SERVED:  # a refused request says nothing about the model's latency
                self.latencies_ms.append(latency_ms)
            self.last_used, self.last_used_monotonic = utc_now(), time.monotonic()

    def record(self, outcome: str, latency_ms: float) -> None:
        """A request that failed before it was in flight (bad input, model unavailable)."""
        with self._lock:
            self.in_flight += 1
        self.end(outcome, latency_ms)

    def touch(self) -> None:
        """Activity that is not a model request (a stream opened) still counts as use."""
        with self._lock:
            self.last_used_monotonic = time.monotonic()

    def idle_for(self) -> float:
        with self._lock:
            return time.monotonic() - self.last_used_monotonic if self.in_flight == 0 else 0.0

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def success_rate(self) -> float:
        with self._lock:
            total = sum(self.outcomes.values())
            return round(self.outcomes["ok"] / total, 4) if total else 1.0

    def percentiles(self) -> LatencyPercentiles | None:
        with self._lock:
            ordered = sorted(self.latencies_ms)
        if not ordered:
            return None
        pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
        return LatencyPercentiles(p50_ms=pick(0.50), p95_ms=pick(0.95), p99_ms=pick(0.99))
