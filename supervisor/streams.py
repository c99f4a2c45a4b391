"""Live ASR streams: which model process holds each stream's state, and when an idle stream expires."""

from __future__ import annotations

import secrets
import threading
import time

from supervisor.errors import SupervisorError, shown


def stream_not_found(stream_id: str) -> SupervisorError:
    return SupervisorError("STREAM_NOT_FOUND", "Stream not found",
                           f"No open stream '{shown(stream_id)}': it was finished, aborted, or expired after being "
                           "idle; open a new one with POST /asr/streams")


class Stream:
    def __init__(self, model_id: str, identity: bytes, punctuate: bool, expires_in_s: float) -> None:
        self.stream_id = "st_" + secrets.token_urlsafe(12)
        self.model_id = model_id
        self.identity = identity          # the process holding this stream's cache; another one cannot continue it
        self.punctuate = punctuate
        self.expires_in_s = expires_in_s
        self.last_activity = time.monotonic()
        self.lock = threading.Lock()       # one call at a time per stream keeps the audio in order
        self.ended = False

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def expired(self, now: float) -> bool:
        return now - self.last_activity > self.expires_in_s


class StreamRegistry:
    def __init__(self) -> None:
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()

    def add(self, stream: Stream) -> None:
        with self._lock:
            self._streams[stream.stream_id] = stream

    def get(self, stream_id: str) -> Stream:
        with self._lock:
            stream = self._streams.get(stream_id)
        if stream is None:
            raise stream_not_found(stream_id)
        return stream

    def remove(self, stream_id: str) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    def open_count(self, model_id: str) -> int:
        with self._lock:
            return sum(1 for s in self._streams.values() if s.model_id == model_id)

    def take_expired(self) -> list[Stream]:
        """Remove and return the streams idle past their expiry (never one mid-call)."""
        now = time.monotonic()
        with self._lock:
            gone = [s for s in self._streams.values() if s.expired(now) and not s.lock.locked()]
            for stream in gone:
                del self._streams[stream.stream_id]
        return gone
