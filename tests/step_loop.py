"""A stepped, single-threaded stand-in for the arbiter's loop, in virtual time (a test double: these tests are
about the arbiter's own rules, not about sockets or processes).

`StepLoop` implements `supervisor.arbiter.loop.Loop` on the test's thread: nothing runs until the test calls
`turn()` or `advance(seconds)`; `advance` moves the virtual clock from timer to timer, so a 300 s keep-alive or
a backoff of a minute takes milliseconds. Virtual time starts at the real monotonic clock's reading and moves
only when told, so timestamps that plain objects take themselves (a request's enqueue time) stay comparable.
Slow work (`offload`) runs at once; messages a process would send are `deliver`ed by the test, and what the
arbiter sends is kept in `sent`. `StepSpawner` makes `StepChild` processes that exit when signalled or told.
"""

from __future__ import annotations

import heapq
import itertools
import signal
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

import msgspec

from supervisor.arbiter.loop import OnFailure, resolve
from supervisor.timer import Timer
from wire.protocol import LoadTimings, Ready, WorkerSpec

_fds = itertools.count(100000)
_pids = itertools.count(700000)


class StepLoop:
    endpoint = "inproc://step-loop"  # nothing connects: the test delivers what a process would send

    def __init__(self, on_message: Callable[[bytes, Any], None], after_turn: Callable[[], None],
                 on_failure: OnFailure) -> None:
        self._on_message, self._after_turn, self._on_failure = on_message, after_turn, on_failure
        self._now = self.resumed_at = time.monotonic()
        self._posted: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Timer, Callable[[], None], str | None]] = []
        self._sequence = itertools.count()
        self._watched: dict[int, tuple[Callable[[], None], str | None]] = {}
        self._to_settle: list[tuple[Future, Any, BaseException | None]] = []
        self.sent: list[tuple[bytes, msgspec.Struct]] = []

    # -- the Loop protocol ------------------------------------------------------------------------------
    def now(self) -> float:
        return self._now

    def start(self) -> None:
        pass

    def post(self, fn: Callable[[], None]) -> None:
        self._posted.append(fn)

    def call(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()

        def run() -> None:
            try:
                self.settle(future, fn())
            except Exception as exc:
                self.settle(future, error=exc)
        self.post(run)
        return future

    def settle(self, future: Future, result: Any = None, error: BaseException | None = None) -> None:
        self._to_settle.append((future, result, error))

    def call_later(self, delay_s: float, fn: Callable[[], None], owner: str | None = None) -> Timer:
        timer = Timer()
        heapq.heappush(self._timers, (self._now + delay_s, next(self._sequence), timer, fn, owner))
        return timer

    def watch(self, fd: int, on_ready: Callable[[], None], owner: str | None = None) -> None:
        self._watched[fd] = (on_ready, owner)

    def offload(self, work: Callable[[], Any], then: Callable[[Any, BaseException | None], None],
                owner: str | None = None) -> None:
        try:
            result, error = work(), None
        except Exception as exc:
            result, error = None, exc
        self.post(lambda: self._guarded(lambda: then(result, error), owner))

    def send(self, identity: bytes, message: msgspec.Struct) -> bool:
        self.sent.append((identity, message))
        return True

    # -- what the test drives ---------------------------------------------------------------------------
    def deliver(self, identity: bytes, message: msgspec.Struct) -> None:
        """A message from a process, handled on the next turn."""
        self.post(lambda: self._on_message(identity, message))

    def exited(self, fd: int) -> None:
        """The process behind `fd` ended: its watcher fires on the next turn."""
        on_ready, owner = self._watched.pop(fd)
        self.post(lambda: self._guarded(on_ready, owner))

    def turn(self) -> None:
        """Run everything posted (and what that posts), the timers due, then publish and settle."""
        while self._posted:
            self._posted.popleft()()
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer, fn, owner = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(fn, owner)
            while self._posted:
                self._posted.popleft()()
        self._after_turn()
        settle, self._to_settle = self._to_settle, []
        for future, result, error in settle:
            resolve(future, result, error)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by `seconds`, turning at each timer on the way."""
        until = self._now + seconds
        self.turn()
        while True:
            due = [t for t in self._timers if not t[2].cancelled]
            nearest = min(due)[0] if due else None
            if nearest is None or nearest > until:
                break
            self._now = max(self._now, nearest)
            self.turn()
        self._now = until
        self.turn()

    def _guarded(self, fn: Callable[[], None], owner: str | None) -> None:
        try:
            fn()
        except Exception as exc:
            if owner is None:
                raise
            self._on_failure(owner, exc)


class StepChild:
    def __init__(self, spec: WorkerSpec, spawner: StepSpawner) -> None:
        self.spec, self._spawner = spec, spawner
        self.pid, self.exit_fd = next(_pids), next(_fds)
        self.exitcode: int | None = None
        self.signals: list[int] = []

    def signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum in (signal.SIGKILL, signal.SIGTERM) and self.exitcode is None:
            self.exit(-signum)

    def exit(self, code: int) -> None:
        self.exitcode = code
        self._spawner.loop.exited(self.exit_fd)

    def reap(self) -> int | None:
        return self.exitcode

    def close(self) -> None:
        pass

    @property
    def alive(self) -> bool:
        return self.exitcode is None

    def ready(self) -> None:
        """Send Ready, as a worker does once its model is loaded."""
        timings = LoadTimings(process_start_ms=1, imports_ms=0, weights_ms=1, trim_ms=0, warmup_ms=1, total_ms=3)
        self._spawner.loop.deliver(self.spec.identity, Ready(pid=self.pid, timings=timings,
                                                            resolved_source="/step", source_was_cached=True))


class StepSpawner:
    """Spawns `StepChild`ren; `memory` is what every process's (RSS, Private_Dirty) reads as."""

    def __init__(self) -> None:
        self.loop: StepLoop | None = None   # set once the arbiter has made it
        self.children: list[StepChild] = []
        self.memory: tuple = (100.0, 50.0)

    def spawn(self, spec: WorkerSpec) -> StepChild:
        child = StepChild(spec, self)
        self.children.append(child)
        return child

    def memory_mb(self, pid: int) -> tuple:
        return self.memory

    def of(self, model_id: str) -> list[StepChild]:
        return [c for c in self.children if c.spec.model_id == model_id]

    def alive(self, model_id: str) -> list[StepChild]:
        return [c for c in self.of(model_id) if c.alive]
