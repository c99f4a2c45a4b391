"""What a caller hands the arbiter for a model besides its lifecycle: `Supervisor.submit` takes any of these, and
each is answered on its own Future (a WorkResult for work that queues; a stream id, or None, for the rest)."""

from __future__ import annotations

from typing import Union

import msgspec


class Punctuation(msgspec.Struct, frozen=True):
    model_id: str
    text: str


class Recording(msgspec.Struct, frozen=True):
    """A whole recording (or one segment of it): transcribed by an ASR model, split into speech by a VAD."""

    model_id: str
    pcm: bytes
    hotwords: str = ""


class OpenStream(msgspec.Struct, frozen=True):
    model_id: str
    punctuate: bool = False
    sequence_id: str | None = None     # a Triton sequence: a stream already open under it is aborted


class Feed(msgspec.Struct, frozen=True):
    model_id: str
    stream_id: str
    pcm: bytes
    is_final: bool = False


class SequenceStream(msgspec.Struct, frozen=True):
    """The stream open under a client's sequence id."""

    model_id: str
    sequence_id: str


class Abort(msgspec.Struct, frozen=True):
    model_id: str
    stream_id: str


class LiveSessions(msgspec.Struct, frozen=True):
    """A WebSocket session began (`change` 1) or ended (-1) on these models: /model/info counts it."""

    model_ids: list[str]
    change: int


class Refused(msgspec.Struct, frozen=True):
    """A request refused before it reached the queue (bad input): it still counts against the success rate."""

    model_id: str


Order = Union[Punctuation, Recording, OpenStream, Feed, SequenceStream, Abort, LiveSessions, Refused]
