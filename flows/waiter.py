"""How long a flow waits for the arbiter's answer, and what giving up means.

The arbiter bounds every wait itself (load timeout, queue and piece deadlines), so these backstops only catch a
wedged arbiter: then the caller gets INTERNAL and the log gets the arbiter thread's stack.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Any, Callable

from supervisor.config import ServerSettings
from wire.audio import BYTES_PER_MS
from wire.errors import ErrorCode, SupervisorError

log = logging.getLogger(__name__)


class Waiter:
    def __init__(self, settings: ServerSettings, where: Callable[[], str]) -> None:
        self.settings, self.where = settings, where

    def backstop_s(self, audio_bytes: int = 0) -> float:
        """Long enough for a cold start and every piece of this much audio to meet its own deadline."""
        pieces = audio_bytes // (self.settings.transcribe_piece_ms * BYTES_PER_MS) + 1
        return self.settings.load_timeout_s + (2 * pieces + 2) * self.settings.request_timeout_s + 60

    def result(self, future: Future, audio_bytes: int = 0) -> Any:
        """Block until the answer (from a request thread)."""
        timeout_s = self.backstop_s(audio_bytes)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            raise self.stuck(timeout_s) from None

    async def answer(self, future: Future, audio_bytes: int = 0) -> Any:
        """Await the answer on an event loop: no thread is held while the model works."""
        timeout_s = self.backstop_s(audio_bytes)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except asyncio.TimeoutError:
            raise self.stuck(timeout_s) from None

    def stuck(self, timeout_s: float) -> SupervisorError:
        log.error("flows: no answer within %.0f s; the arbiter is at:\n%s", timeout_s, self.where())
        return SupervisorError(ErrorCode.INTERNAL, "The supervisor did not answer in time",
                               "the server logged it; please report it")
