"""Live streams (ASR and VAD): which replica holds each stream's cache, when an idle one expires, and which were lost.

Arbiter thread only. A stream whose process went away is remembered (boundedly) so its next call says
STREAM_LOST (once), not STREAM_NOT_FOUND.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from supervisor.errors import SupervisorError, shown

KEEP_LOST = 4096


def stream_not_found(stream_id: str) -> SupervisorError:
    return SupervisorError("STREAM_NOT_FOUND", "Stream not found",
                           f"No open stream '{shown(stream_id)}': it was finished, aborted, or expired after being "
                           "idle, or is another model's stream; open a new one")


def stream_lost(stream_id: str, why: str) -> SupervisorError:
    return SupervisorError("STREAM_LOST", "Stream lost", f"Stream '{shown(stream_id)}' cannot continue: {why}; "
                           "open a new stream", stream_id=stream_id)


class Stream:
    def __init__(self, model_id: str, punctuate: bool, expires_in_s: float) -> None:
        self.stream_id = "st_" + secrets.token_urlsafe(12)
        self.model_id = model_id
        self.identity: bytes | None = None    # the replica holding this stream's cache, once opened
        self.punctuate = punctuate
        self.expires_in_s = expires_in_s
        self.last_activity = time.monotonic()
        self.pending = 0                      # feeds queued or running: never expire one mid-call
        self.audio_bytes = 0                  # fed so far, against max_stream_s

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def expired(self, now: float) -> bool:
        return not self.pending and now - self.last_activity > self.expires_in_s


class StreamRegistry:
    def __init__(self) -> None:
        self.open: dict[str, Stream] = {}
        self._lost: OrderedDict[str, str] = OrderedDict()

    def add(self, stream: Stream) -> None:
        self.open[stream.stream_id] = stream

    def get(self, stream_id: str, model_id: str) -> Stream:
        """An open stream of `model_id`: an ASR stream's id on a VAD route (or the other way round) is unknown."""
        stream = self.open.get(stream_id)
        if stream is not None and stream.model_id == model_id:
            return stream
        if stream is not None:
            raise stream_not_found(stream_id)
        if stream_id in self._lost:  # said once; after that the stream is simply unknown
            raise stream_lost(stream_id, self._lost.pop(stream_id))
        raise stream_not_found(stream_id)

    def remove(self, stream_id: str) -> Stream | None:
        return self.open.pop(stream_id, None)

    def lose(self, stream_id: str, why: str) -> None:
        self.open.pop(stream_id, None)
        self._lost[stream_id] = why
        while len(self._lost) > KEEP_LOST:
            self._lost.popitem(last=False)

    def open_count(self, model_id: str) -> int:
        return sum(1 for s in self.open.values() if s.model_id == model_id)

    def take_expired(self) -> list[Stream]:
        now = time.monotonic()
        gone = [s for s in self.open.values() if s.expired(now)]
        for stream in gone:
            del self.open[stream.stream_id]
        return gone
