"""Per-model request accounting: counts by outcome, latency percentiles, last use. Arbiter thread only."""

from __future__ import annotations

import time
from collections import Counter, deque
from datetime import datetime

from supervisor.jobs import utc_now
from wire.views import LatencyPercentiles

LATENCY_WINDOW = 2048  # percentiles over the most recent requests
PERCENTILES_EVERY_S = 0.5  # sorting the window is ~0.2 ms: not on every request's way out
NOT_SERVED = frozenset({"invalid", "unavailable", "overloaded"})


class UsageStats:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.last_used: datetime | None = None
        self.last_used_monotonic = time.monotonic()
        self.cold_starts = 0
        self.idle_unloads = 0
        self.live_sessions = 0  # WebSocket sessions using the model now (FunASR's protocol, OpenAI Realtime)
        self.batches = 0        # hand-offs to its processes
        self.batched_items = 0  # requests (pieces) in them
        self.cpu_ms = 0.0       # its processes' CPU time on requests
        self.audio_ms = 0.0     # audio those requests held
        self._latencies_seen = 0
        self._percentiles: tuple[int, float, LatencyPercentiles | None] = (0, 0.0, None)

    def record(self, outcome: str, latency_ms: float) -> None:
        self.outcomes[outcome] += 1
        if outcome not in NOT_SERVED:  # a refused request says nothing about the model's latency
            self.latencies_ms.append(latency_ms)
            self._latencies_seen += 1
        self.touch()
        self.last_used = utc_now()

    def batched(self, items: int) -> None:
        self.batches += 1
        self.batched_items += items

    def worked(self, cpu_ms: float, audio_ms: float) -> None:
        self.cpu_ms += cpu_ms
        self.audio_ms += audio_ms

    def cpu_per_audio_s(self) -> float | None:
        """CPU seconds per second of audio heard: the cores one real-time stream of this model costs."""
        return round(self.cpu_ms / self.audio_ms, 4) if self.audio_ms else None

    def touch(self) -> None:
        """Activity that is not a finished request (a load, a stream opened) still counts as use."""
        self.last_used_monotonic = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_used_monotonic

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def success_rate(self) -> float:
        total = self.total
        return round(self.outcomes["ok"] / total, 4) if total else 1.0

    def percentiles(self) -> LatencyPercentiles | None:
        """Recomputed when requests came in, at most every PERCENTILES_EVERY_S (the first one at once)."""
        count, computed_at, value = self._percentiles
        now = time.monotonic()
        if count != self._latencies_seen and (value is None or now - computed_at >= PERCENTILES_EVERY_S):
            ordered = sorted(self.latencies_ms)
            pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
            value = LatencyPercentiles(p50_ms=pick(0.50), p95_ms=pick(0.95), p99_ms=pick(0.99)) if ordered else None
            self._percentiles = (self._latencies_seen, now, value)
        return value
