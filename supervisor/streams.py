"""Live streams (ASR and VAD): which replica holds each stream's cache, when an idle one expires, and which were lost.

Arbiter thread only. A stream whose process went away is remembered (boundedly) so its next call says
STREAM_LOST (once), not STREAM_NOT_FOUND. A stream may also carry a client's sequence id (Triton's
`sequence_id`), by which that client finds it again.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from wire.errors import ErrorCode, SupervisorError, shown

KEEP_LOST = 4096


def stream_not_found(stream_id: str) -> SupervisorError:
    return SupervisorError(ErrorCode.STREAM_NOT_FOUND, "Stream not found",
                           f"No open stream '{shown(stream_id)}': it was finished, aborted, or expired after being "
                           "idle, or is another model's stream; open a new one")


def stream_lost(stream_id: str, why: str) -> SupervisorError:
    return SupervisorError(ErrorCode.STREAM_LOST, "Stream lost", f"Stream '{shown(stream_id)}' cannot continue: {why}; "
                           "open a new stream", stream_id=stream_id)


def sequence_not_started(sequence_id: str) -> SupervisorError:
    return SupervisorError(ErrorCode.STREAM_NOT_FOUND, "Sequence not started",
                           f"No open sequence '{shown(sequence_id)}': send sequence_start=true on its first request "
                           "(it may have ended, or expired after being idle)")


class Stream:
    def __init__(self, model_id: str, punctuate: bool, expires_in_s: float, sequence_id: str | None = None) -> None:
        self.stream_id = "st_" + secrets.token_urlsafe(12)
        self.model_id = model_id
        self.sequence_id = sequence_id        # the client's name for it, when opened as a sequence
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
        self._sequences: dict[tuple[str, str], str] = {}   # (model_id, sequence_id) -> stream_id
        self._lost: OrderedDict[str | tuple[str, str], str] = OrderedDict()

    def add(self, stream: Stream) -> None:
        self.open[stream.stream_id] = stream
        if stream.sequence_id is not None:
            self._sequences[(stream.model_id, stream.sequence_id)] = stream.stream_id

    def restart_sequence(self, model_id: str, sequence_id: str) -> str | None:
        """A new start under a client's sequence id: a lost one is forgotten; an open one's stream id is returned
        (the caller aborts it)."""
        self._lost.pop((model_id, sequence_id), None)
        return self._sequences.get((model_id, sequence_id))

    def sequence_stream(self, model_id: str, sequence_id: str) -> str:
        """The stream id of a client's open sequence; a lost one raises STREAM_LOST once."""
        key = (model_id, sequence_id)
        if key in self._lost:
            raise stream_lost(sequence_id, self._lost.pop(key))
        if key not in self._sequences:
            raise sequence_not_started(sequence_id)
        return self._sequences[key]

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
        stream = self.open.pop(stream_id, None)
        if stream is not None and stream.sequence_id is not None:
            key = (stream.model_id, stream.sequence_id)
            if self._sequences.get(key) == stream_id:
                del self._sequences[key]
        return stream

    def lose(self, stream_id: str, why: str) -> None:
        stream = self.remove(stream_id)
        self._lost[stream_id] = why
        if stream is not None and stream.sequence_id is not None:
            self._lost[(stream.model_id, stream.sequence_id)] = why
        while len(self._lost) > KEEP_LOST:
            self._lost.popitem(last=False)

    def open_count(self, model_id: str) -> int:
        return sum(1 for s in self.open.values() if s.model_id == model_id)

    def expired(self, now: float) -> list[Stream]:
        """Open streams idle past their expiry at `now` (the caller removes them)."""
        return [s for s in self.open.values() if s.expired(now)]
