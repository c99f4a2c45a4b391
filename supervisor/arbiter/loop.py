"""What the arbiter's parts need from the loop they run on, so a test can hand them a stepped one.

`EventLoop` is the real one (a thread polling ZeroMQ, pidfds and timers); `tests/step_loop.StepLoop` runs the
same calls on the test's own thread in virtual time. Parts read the time from `now()`, never from the system
clock, so deadlines, backoff, idle and heartbeat rules can be tested without sleeping.

`owner` names the model a callback works on: if the callback raises, that model fails loudly (status `failed`,
`last_error`) instead of being left half-way through a transition, and the loop goes on.
"""

from __future__ import annotations

from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Protocol

import msgspec

from supervisor.timer import Timer


def resolve(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Give a caller its answer, unless it stopped waiting: an asyncio caller cancelled (a WebSocket that closed)
    cancels the Future, possibly while the loop sets it, and that is not an error."""
    try:
        future.set_exception(error) if error is not None else future.set_result(result)
    except InvalidStateError:
        pass


class Loop(Protocol):
    endpoint: str        # where model processes connect
    resumed_at: float    # when the loop last started listening again after a stall (heartbeats count from it)

    def now(self) -> float: ...

    def post(self, fn: Callable[[], None]) -> None: ...

    def call(self, fn: Callable[[], Any]) -> Future: ...

    def settle(self, future: Future, result: Any = None, error: BaseException | None = None) -> None: ...

    def call_later(self, delay_s: float, fn: Callable[[], None], owner: str | None = None) -> Timer: ...

    def watch(self, fd: int, on_ready: Callable[[], None], owner: str | None = None) -> None: ...

    def offload(self, work: Callable[[], Any], then: Callable[[Any, BaseException | None], None],
                owner: str | None = None) -> None: ...

    def send(self, identity: bytes, message: msgspec.Struct) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_alive(self) -> bool: ...

    def where(self) -> str: ...


OnFailure = Callable[[str, BaseException], None]   # (model id, what its callback raised)
