"""One request on one model, waited on: punctuation, a recording's speech segments, a stream's open, feed and
abort. Each is an order handed to the facade (`submit`) and a wait on its Future with the waiter's backstop."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Any, Callable

from flows.pcm import check_pcm
from flows.ports import SupervisorAPI
from flows.waiter import Waiter
from supervisor.kinds import KINDS
from supervisor.orders import Abort, Feed, OpenStream, Order, Punctuation, Recording, Refused, SequenceStream
from supervisor.work import WorkResult
from wire.audio import BYTES_PER_MS, SAMPLE_RATE
from wire.errors import SupervisorError
from wire.views import PunctuationResult, SpeechSegments, StreamOpened, StreamText

log = logging.getLogger(__name__)

CHUNK_MS = 600
NO_PUNCTUATION = PunctuationResult(text="", processing_ms=0.0, cold_start=False, model_ms=0.0)


class Requests:
    def __init__(self, sup: SupervisorAPI) -> None:
        self.sup = sup
        self.waiter = Waiter(sup.settings, sup.where)

    def one(self, order: Order, audio_bytes: int = 0) -> Any:
        """Submit one order and wait for its answer."""
        return self.waiter.result(self.sup.submit(order)[0], audio_bytes)

    def refused_counted(self, model_id: str, check: Callable[[], None]) -> None:
        """Bad input is refused before it queues, and still counts against the model's success rate."""
        try:
            check()
        except SupervisorError:
            self.one(Refused(model_id))
            raise

    # -- text --------------------------------------------------------------------------------------------
    def punctuating(self, text: str, model: str | None = None) -> Future:
        return self.sup.submit(Punctuation(self.sup.model_for(("punctuation",), model), text))[0]

    def punctuate(self, text: str, model: str | None = None) -> PunctuationResult:
        began = time.monotonic()
        return punctuation(self.waiter.result(self.punctuating(text, model)), began)

    def punctuated_or_warn(self, text: str, warnings: list[str]) -> PunctuationResult | None:
        """Punctuation is an extra: when it cannot be had, the recognised text is still the answer."""
        if not text:
            return NO_PUNCTUATION
        try:
            return self.punctuate(text)
        except SupervisorError as exc:
            unavailable(exc, warnings)
            return None

    async def punctuated_or_warn_async(self, text: str, warnings: list[str]) -> PunctuationResult | None:
        """The same, awaited on an event loop."""
        if not text:
            return NO_PUNCTUATION
        began = time.monotonic()
        try:
            return punctuation(await self.waiter.answer(self.punctuating(text)), began)
        except SupervisorError as exc:
            unavailable(exc, warnings)
            return None

    # -- whole recordings -------------------------------------------------------------------------------
    def recognising(self, model_id: str, pcm: bytes, hotwords: str = "") -> Future:
        """Queue one recording (or segment) on a speech model; the Future gets its WorkResult."""
        return self.sup.submit(Recording(model_id, pcm, hotwords))[0]

    def detect_speech(self, pcm: bytes, model: str | None = None) -> SpeechSegments:
        """The VAD's speech segments of a whole recording."""
        model_id = self.sup.model_for(("vad",), model)
        self.refused_counted(model_id, lambda: check_pcm(pcm))
        began = time.monotonic()
        result = self.one(Recording(model_id, pcm), len(pcm))
        processing_ms, audio_ms = (time.monotonic() - began) * 1000, len(pcm) / BYTES_PER_MS
        return SpeechSegments(segments=[[s, e] for s, e in result.segments], audio_ms=round(audio_ms, 1),
                              processing_ms=round(processing_ms, 2), rtf=round(processing_ms / audio_ms, 4),
                              cold_start=result.cold_start, model_ms=round(result.compute_ms, 3))

    # -- streams ------------------------------------------------------------------------------------------
    def streaming(self, model_id: str | None, kind: str | None) -> str:
        """A stream's model: of the route's `kind`; called without one, any streaming model named, or the
        streaming ASR's default."""
        if kind is None:
            view = self.sup.snapshot.models.get(model_id or "")
            kind = view.kind if view is not None and KINDS[view.kind].streams else "streaming_asr"
        return self.sup.model_for((kind,), model_id)

    def open_stream(self, punctuate: bool, model_id: str | None = None, sequence_id: str | None = None,
                    kind: str | None = None) -> StreamOpened:
        model_id = self.streaming(model_id, kind)
        result = self.one(OpenStream(model_id, punctuate, sequence_id))
        return StreamOpened(stream_id=result.stream.stream_id, sample_rate=SAMPLE_RATE, chunk_ms=CHUNK_MS,
                            expires_in_s=result.stream.expires_in_s, cold_start=result.cold_start, model=model_id)

    def feed(self, stream_id: str, pcm: bytes, is_final: bool = False, model_id: str | None = None,
             kind: str | None = None) -> StreamText:
        """Audio for a stream; its final text is punctuated when the stream was opened asking for it."""
        model_id = self.streaming(model_id, kind)
        self.refused_counted(model_id, lambda: check_pcm(pcm, allow_empty=is_final))
        began = time.monotonic()
        result: WorkResult = self.one(Feed(model_id, stream_id, pcm, is_final), len(pcm))
        warnings: list[str] = []
        wanted = is_final and result.stream is not None and result.stream.punctuate
        punctuated = self.punctuated_or_warn(result.partial_text, warnings) if wanted else None
        return StreamText(text=result.partial_text if is_final else result.text, partial_text=result.partial_text,
                          punctuated_text=punctuated.text if punctuated else None,
                          processing_ms=round((time.monotonic() - began) * 1000, 2),
                          model_ms=round(result.compute_ms + (punctuated.model_ms if punctuated else 0), 3),
                          warnings=warnings, segments=[[s, e] for s, e in result.segments])

    def feed_sequence(self, sequence_id: str, pcm: bytes, start: bool, end: bool, model_id: str | None = None,
                      punctuate: bool = False, kind: str | None = None) -> tuple[StreamText, bool]:
        """Triton's sequence batching on our streams: `start` opens a stream under the client's sequence id,
        each request feeds it, `end` finishes it. Also says whether the start was a cold start."""
        model_id = self.streaming(model_id, kind)
        cold_start = start and self.open_stream(punctuate, model_id, sequence_id, kind).cold_start
        stream_id = self.one(SequenceStream(model_id, sequence_id))
        return self.feed(stream_id, pcm, is_final=end, model_id=model_id, kind=kind), cold_start

    def abort(self, stream_id: str, model_id: str | None = None, kind: str | None = None) -> None:
        self.one(Abort(self.streaming(model_id, kind), stream_id))


def punctuation(result: WorkResult, began: float) -> PunctuationResult:
    return PunctuationResult(text=result.text, processing_ms=round((time.monotonic() - began) * 1000, 2),
                             cold_start=result.cold_start, model_ms=round(result.compute_ms, 3))


def unavailable(exc: SupervisorError, warnings: list[str]) -> None:
    log.warning("punctuation unavailable, answering unpunctuated text: %s %s", exc.code, exc.message)
    warnings.append(f"punctuation unavailable ({exc.code}: {exc.message}); punctuated_text is null")
