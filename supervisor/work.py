"""What waits in a model's queue: one client request, turned into one or more messages to a model process.

Audio is sent in pieces (`piece_bytes`), each its own message: between two pieces of a long transcription the
replica takes other queued work, so one long file cannot starve live streams, and each piece that comes back
proves the process is making progress (its deadline restarts).

Work of one `sort` may share a hand-off with other work of that sort (a batch); `stream_key` names the engine
stream a piece belongs to, so a batch never holds two pieces of one stream.
"""

from __future__ import annotations

import time
from concurrent.futures import Future

import msgspec

from wire.protocol import Punctuate, Reply, StreamFeed
from supervisor.streams import Stream
from wire.audio import BYTES_PER_MS


class WorkResult(msgspec.Struct, frozen=True):
    text: str
    partial_text: str
    compute_ms: float
    cold_start: bool
    stream: Stream | None = None
    segments: list[tuple[int, int]] = []  # VAD: speech segments closed by this audio, ms from its start
    words: list[tuple[str, int, int]] = []  # asr: tokens with their times, ms from the audio's start
    tags: dict[str, str] = {}               # asr (SenseVoice): language, emotion, event
    speech_from_ms: int = -1  # VAD streams: start of the speech heard and not yet closed (-1: none open)


class Work:
    """One request. `pinned` names the replica it must run on (its stream's cache lives there)."""

    def __init__(self, model_id: str, wait_s: float) -> None:
        self.model_id = model_id
        self.future: Future = Future()
        self.enqueued_at = time.monotonic()
        self.wait_s = wait_s
        self.queue_deadline = self.enqueued_at + wait_s
        self.cold_start = False
        self.pinned: bytes | None = None
        self.request_id = 0
        self.compute_ms = 0.0
        self.stream: Stream | None = None

    @property
    def sort(self) -> tuple | None:
        """What it batches with; None: it runs alone."""
        return None

    @property
    def stream_key(self) -> str | None:
        """The engine stream its pieces feed."""
        return None

    def piece_audio_ms(self) -> float:
        """The audio in the piece being run (for CPU per audio second); 0 for text."""
        return 0.0

    def requeued(self) -> None:
        """Back in the queue between pieces: waiting there again is not the process's fault."""
        self.queue_deadline = time.monotonic() + self.wait_s

    def message(self, request_id: int) -> Punctuate | StreamFeed:
        raise NotImplementedError

    def absorb(self, reply: Reply) -> bool:
        """Take a reply; True when the request is complete."""
        raise NotImplementedError

    def result(self) -> WorkResult:
        raise NotImplementedError


class OpenStreamWork(Work):
    """Needs no model call: done as soon as a replica serves (its stream is pinned to the least busy one)."""

    def __init__(self, model_id: str, wait_s: float, stream: Stream) -> None:
        super().__init__(model_id, wait_s)
        self.stream: Stream = stream

    def result(self) -> WorkResult:
        return WorkResult(text="", partial_text="", compute_ms=0.0, cold_start=self.cold_start, stream=self.stream)


class PunctuateWork(Work):
    @property
    def sort(self) -> tuple | None:
        return ("text",)

    def __init__(self, model_id: str, wait_s: float, text: str) -> None:
        super().__init__(model_id, wait_s)
        self.text = text
        self.answer = ""

    def message(self, request_id: int) -> Punctuate:
        return Punctuate(request_id=request_id, text=self.text)

    def absorb(self, reply: Reply) -> bool:
        self.answer = reply.text
        self.compute_ms += reply.compute_ms
        return True

    def result(self) -> WorkResult:
        return WorkResult(text=self.answer, partial_text="", compute_ms=self.compute_ms, cold_start=self.cold_start)


class AudioWork(Work):
    """Audio for one engine stream: a live stream's feed, or a whole recording on a private stream id."""

    def __init__(self, model_id: str, wait_s: float, stream_id: str, pcm: bytes, is_final: bool,
                 piece_bytes: int) -> None:
        super().__init__(model_id, wait_s)
        self.stream_id = stream_id
        self.pcm = pcm
        self.is_final = is_final
        self.piece_bytes = piece_bytes
        self.offset = 0
        self.texts: list[str] = []
        self.partial = ""
        self.segments: list[tuple[int, int]] = []
        self.words: list[tuple[str, int, int]] = []
        self.tags: dict[str, str] = {}
        self.speech_from_ms = -1
        self.hotwords = ""

    @property
    def sort(self) -> tuple | None:
        return ("audio", self.hotwords)   # one batched call takes one set of hotwords

    @property
    def stream_key(self) -> str | None:
        return self.stream_id

    def piece_audio_ms(self) -> float:
        return len(self.pcm[self.offset:self.offset + self.piece_bytes]) / BYTES_PER_MS

    def message(self, request_id: int) -> StreamFeed:
        end = self.offset + self.piece_bytes
        return StreamFeed(request_id=request_id, stream_id=self.stream_id, pcm=self.pcm[self.offset:end],
                          is_final=self.is_final and end >= len(self.pcm), hotwords=self.hotwords)

    def absorb(self, reply: Reply) -> bool:
        self.texts.append(reply.text)
        self.partial = reply.partial_text
        self.segments += reply.segments
        self.words += reply.words
        self.tags |= reply.tags
        self.speech_from_ms = reply.speech_from_ms
        self.compute_ms += reply.compute_ms
        self.offset += self.piece_bytes
        return self.offset >= len(self.pcm)

    def result(self) -> WorkResult:
        return WorkResult(text="".join(self.texts), partial_text=self.partial, compute_ms=self.compute_ms,
                          cold_start=self.cold_start, stream=self.stream, segments=self.segments,
                          words=self.words, tags=self.tags, speech_from_ms=self.speech_from_ms)
