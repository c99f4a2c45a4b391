"""What engines answer, and what stream engines share: the types a model process's requests become.

Split from `engines` so that engine modules of their own (`offline_asr`) and `engines` both use them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, TypeVar, Union

import numpy as np


log = logging.getLogger(__name__)
T = TypeVar("T")


class Feed(NamedTuple):
    """One piece of audio for one engine stream."""

    stream_id: str
    samples: np.ndarray
    is_final: bool
    hotwords: str = ""


class Heard(NamedTuple):
    """What one piece of audio gave: new text and all text so far (ASR), or speech segments closed by it (VAD,
    `[start_ms, end_ms]` from the stream's start); offline ASR adds each token's times and SenseVoice's tags."""

    text: str = ""
    partial_text: str = ""
    segments: tuple[tuple[int, int], ...] = ()
    words: tuple[tuple[str, int, int], ...] = ()
    tags: dict[str, str] = {}
    speech_from: int = -1  # VAD: where speech heard and not yet closed began (ms), -1 when none is open


def attempt(call: Callable[..., T], *args: Any) -> T | Exception:
    """The call's answer, or the exception it raised: one item of a batch fails alone."""
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001
        log.exception("a request failed")
        return exc


class StreamEngine:
    """An engine whose requests are pieces of streams, each stream's state held here."""

    def feed(self, stream_id: str, samples: np.ndarray, is_final: bool, hotwords: str = "") -> Heard:
        raise NotImplementedError

    def feed_many(self, feeds: list[Feed]) -> list[Outcome]:
        """Pieces of distinct streams, one after another: a piece that fails, fails alone."""
        return [attempt(self.feed, *feed) for feed in feeds]


Outcome = Union[Heard, Exception]
