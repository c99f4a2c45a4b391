"""What every live WebSocket session does, whichever protocol it speaks (OpenAI Realtime, FunASR's runtime).

Three tasks per connection: the receiver (the protocol's own loop over `messages()`), the processor (steps the
`flows.live` session in the order the client sent things; audio that queued while a step ran goes in one
step, so a slow model is caught up rather than fallen behind) and the completer (each closed segment's final text,
in order, while later audio is still being heard). The session's steps await the arbiter's Futures on this event
loop; only decoding and resampling run on the server's thread pool.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from api.common.decode import LiveAudio
from api.common.deps import Deps
from wire.errors import ErrorCode, SupervisorError
from flows.live import LiveSession, SegmentClosed, SegmentText

CLOSE_IDLE, CLOSE_UNSUPPORTED, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_FAILED = 1000, 1003, 1008, 1009, 1011
RETIRED = object()
CLOSE_CODES = {ErrorCode.INVALID_REQUEST: CLOSE_UNSUPPORTED, ErrorCode.MODEL_NOT_FOUND: CLOSE_UNSUPPORTED,
               ErrorCode.PAYLOAD_TOO_LARGE: CLOSE_POLICY, ErrorCode.UNSUPPORTED_MEDIA: CLOSE_UNSUPPORTED}


class LivePump:
    def __init__(self, ws, deps: Deps) -> None:
        self.ws, self.flows, self.settings, self.limits = ws, deps.flows, deps.settings, deps.limits
        self.todo: asyncio.Queue = asyncio.Queue()
        self.finals: asyncio.Queue = asyncio.Queue()
        self.live: LiveSession | None = None       # the session audio goes to now
        self.open: set[LiveSession] = set()       # it, and retired ones whose last segments are still completing
        self.stepping = self.completing = False

    async def pumping(self) -> None:
        """Run the processor and the completer until the receiver (the caller's `receive`) returns."""
        tasks = [asyncio.create_task(self.process()), asyncio.create_task(self.complete())]
        try:
            await self.receive()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for live in self.open:
                await live.close()

    async def messages(self) -> AsyncIterator[str | bytes]:
        """The client's messages; an idle client or an oversize message ends the connection with an error."""
        while True:
            try:
                message = await asyncio.wait_for(self.ws.recv(), self.settings.ws_idle_s)
            except asyncio.TimeoutError:
                if self.busy():  # the client waits for answers still being worked out: that is not idling
                    continue
                await self.idle()
                return
            if len(message) > self.limits.frame_bytes:
                await self.fail(SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Message too large",
                                                f"a message is limited to ws_max_frame_mb="
                                                f"{self.settings.ws_max_frame_mb:g} MiB ([server] in the config)"),
                                CLOSE_TOO_BIG)
                return
            yield message

    async def process(self) -> None:
        held = None
        while True:
            item, held = held if held is not None else await self.todo.get(), None
            while isinstance(item, bytes) and not self.todo.empty():
                more = self.todo.get_nowait()
                if not isinstance(more, bytes):
                    held = more
                    break
                item += more
            self.stepping = True
            try:
                await self.step(item)
            except SupervisorError as exc:  # a bad message, a session past its limits, or a model stage failed
                await self.fail(exc, CLOSE_CODES.get(exc.code, CLOSE_FAILED))
                return
            finally:
                self.stepping = False

    async def complete(self) -> None:
        while True:
            self.completing = False
            live, segment, tag = await self.finals.get()
            self.completing = True
            if tag is RETIRED:
                await live.close()
                self.open.discard(live)
                continue
            if segment is None:
                await self.completed(tag, None)
                continue
            try:
                text = await live.completed(segment)
            except SupervisorError as exc:
                await self.segment_failed(tag, exc)
                continue
            await self.completed(tag, text)

    async def finish_later(self, segment: SegmentClosed | None, tag: Any) -> None:
        """Queue a closed segment's final text (None: a marker, answered in its turn) for the completer."""
        await self.finals.put((self.live, segment, tag))

    async def pcm16k(self, audio: LiveAudio, data: bytes) -> bytes:
        """A piece of the client's audio as 16 kHz PCM: resampled or decoded on the thread pool, off this loop."""
        return audio.convert(data) if audio.passthrough else await asyncio.to_thread(audio.convert, data)

    @property
    def current(self) -> LiveSession:
        """The session audio goes to, where the protocol has begun one."""
        if self.live is None:
            raise RuntimeError("no live session is open")
        return self.live

    def begin(self, live: LiveSession) -> LiveSession:
        self.live = live
        self.open.add(live)
        return live

    async def retire(self) -> None:
        """No more audio for the current session: it is closed once its last segments are answered."""
        await self.finals.put((self.live, None, RETIRED))
        self.live = None

    def busy(self) -> bool:
        return bool(self.todo.qsize() or self.finals.qsize() or self.stepping or self.completing)

    async def idle(self) -> None:
        """Nothing came for ws_idle_s: mid-session that is an error; a protocol may close quietly between sessions."""
        await self.fail(SupervisorError(ErrorCode.INVALID_REQUEST, "Session idle",
                                        f"nothing received for ws_idle_s={self.settings.ws_idle_s:g} s"), CLOSE_IDLE)

    # -- what a protocol defines -------------------------------------------------------------------------------
    async def receive(self) -> None:
        raise NotImplementedError

    async def step(self, item) -> None:
        raise NotImplementedError

    async def completed(self, tag: Any, text: SegmentText | None) -> None:
        raise NotImplementedError

    async def segment_failed(self, tag: Any, exc: SupervisorError) -> None:
        raise NotImplementedError

    async def fail(self, exc: SupervisorError, close_code: int) -> None:
        """Answer the error in the protocol's shape, then close with `close_code`."""
        raise NotImplementedError
