"""What the server does with several models for one request, through the facade only: a transcription split on
the VAD's speech segments, punctuation that degrades to plain text, and sentences with times.

Each step is an ordinary facade call, so it queues, cold-starts and is counted like any other request.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Iterator

from wire.errors import SupervisorError
from supervisor.sentences import sentences, shifted
from wire.views import PunctuationResult, SpeechSegments, StreamText, Transcript, TranscriptSegment
from supervisor.work import WorkResult
from wire.audio import BYTES_PER_MS

if TYPE_CHECKING:
    from supervisor.core import Supervisor

log = logging.getLogger(__name__)

NO_PUNCTUATION = PunctuationResult(text="", processing_ms=0.0, cold_start=False, model_ms=0.0)


def transcribe(sup: Supervisor, model_id: str, pcm: bytes, punctuate: bool, vad: bool | None,
               hotwords: str) -> Transcript:
    """Each VAD segment is its own request, so replicas take them in parallel; an `asr` model's tokens keep
    their times, moved to the recording's clock, and make sentences."""
    began = time.monotonic()
    warnings: list[str] = []
    speech = speech_of(sup, pcm, vad, warnings)
    spans = [(0, 0)] if speech is None else speech.segments
    pieces = [pcm] if speech is None else [pcm[s * BYTES_PER_MS:e * BYTES_PER_MS] for s, e in spans]
    results = recognised(sup, model_id, pieces, hotwords)
    texts = [r.text for r in results]
    punctuated = [punctuated_or_warn(sup, t, warnings) for t in texts] if punctuate else []
    whole_punctuated = None if not punctuate or None in punctuated else "".join(p.text for p in punctuated)
    words = [shifted(r.words, start) for r, (start, _) in zip(results, spans)]
    timed = any(words)
    info = [s for i, w in enumerate(words) for s in sentences(w, punctuated[i].text if punctuate and punctuated[i]
                                                               else None)] if timed else None
    segments = None if speech is None else [
        TranscriptSegment(start_ms=start, end_ms=end, text=text,
                          punctuated_text=punctuated[i].text if punctuate and punctuated[i] else None)
        for i, ((start, end), text) in enumerate(zip(spans, texts))]
    processing_ms = (time.monotonic() - began) * 1000
    audio_ms = len(pcm) / BYTES_PER_MS
    model_ms = sum(r.compute_ms for r in results) + sum(p.model_ms for p in punctuated if p)
    model_ms += speech.model_ms if speech else 0
    cold_start = any(r.cold_start for r in results) or any(p.cold_start for p in punctuated if p)
    tags = {k: v for r in results for k, v in r.tags.items()}
    return Transcript(text="".join(texts), punctuated_text=whole_punctuated, audio_ms=round(audio_ms, 1),
                      processing_ms=round(processing_ms, 2), rtf=round(processing_ms / audio_ms, 4),
                      cold_start=cold_start or bool(speech and speech.cold_start), model_ms=round(model_ms, 3),
                      warnings=list(dict.fromkeys(warnings)), segments=segments, model=model_id,
                      timestamp=[(s, e) for w in words for _, s, e in w] if timed else None, sentence_info=info,
                      tokens=[t for w in words for t, _, _ in w] if timed else None,
                      tags=tags or None)


def recognised(sup: Supervisor, model_id: str, pieces: list[bytes], hotwords: str) -> list[WorkResult]:
    return list(recognised_in_order(sup, model_id, pieces, hotwords))


def recognised_in_order(sup: Supervisor, model_id: str, pieces: list[bytes], hotwords: str) -> Iterator[WorkResult]:
    """Each piece its own request, up to max_replicas + 1 queued at a time: idle replicas take them in
    parallel, other clients' requests interleave, and a long file never fills the queue. Results come in the
    pieces' order, each as soon as it and those before it are done."""
    window = sup.window(model_id)
    waiting: deque[tuple[Future, float]] = deque()
    for piece in pieces:
        if len(waiting) == window:
            yield sup.wait(*waiting.popleft())
        waiting.append((sup.recognise(model_id, piece, hotwords), sup.backstop_s(piece)))
    while waiting:
        yield sup.wait(*waiting.popleft())


def segments_as_heard(sup: Supervisor, model_id: str, pcm: bytes, speech: SpeechSegments | None, punctuate: bool,
                      hotwords: str) -> Iterator[TranscriptSegment]:
    """A recording's VAD segments (or, without them, the whole) transcribed and punctuated where punctuation
    serves, each yielded as soon as it is ready: what a streamed answer sends while the rest is being heard."""
    spans = speech.segments if speech is not None else [(0, len(pcm) // BYTES_PER_MS)]
    pieces = [pcm[s * BYTES_PER_MS:e * BYTES_PER_MS] for s, e in spans]
    for (start, end), result in zip(spans, recognised_in_order(sup, model_id, pieces, hotwords)):
        punctuated = punctuated_or_warn(sup, result.text, []) if punctuate else None
        yield TranscriptSegment(start_ms=start, end_ms=end, text=result.text,
                                punctuated_text=punctuated.text if punctuated else None)


def speech_of(sup: Supervisor, pcm: bytes, vad: bool | None, warnings: list[str]) -> SpeechSegments | None:
    """Asked for (`vad` true: its errors are the answer), or by default when the VAD is loaded (then an
    error only costs the split: the whole recording is transcribed, with a warning)."""
    if vad is False:
        return None
    if vad is None:
        try:
            if sup.view(sup.model_for(("vad",))).status != "loaded":
                return None
        except SupervisorError:  # no VAD configured
            return None
    try:
        return sup.detect_speech(pcm)
    except SupervisorError as exc:
        if vad:
            raise
        log.warning("VAD unavailable, transcribing the recording whole: %s %s", exc.code, exc.message)
        warnings.append(f"VAD unavailable ({exc.code}: {exc.message}); the recording was not split")
        return None


def punctuated_or_warn(sup: Supervisor, text: str, warnings: list[str]) -> PunctuationResult | None:
    """Punctuation is an extra: when it cannot be had, the recognised text is still the answer."""
    if not text:
        return NO_PUNCTUATION
    try:
        return sup.punctuate(text)
    except SupervisorError as exc:
        log.warning("punctuation unavailable, answering unpunctuated text: %s %s", exc.code, exc.message)
        warnings.append(f"punctuation unavailable ({exc.code}: {exc.message}); punctuated_text is null")
        return None


def stream_text(sup: Supervisor, result: WorkResult, is_final: bool, began: float) -> StreamText:
    """A stream feed's answer; the final one punctuated when the stream was opened asking for it."""
    warnings: list[str] = []
    wanted = is_final and result.stream.punctuate
    punctuated = punctuated_or_warn(sup, result.partial_text, warnings) if wanted else None
    return StreamText(text=result.partial_text if is_final else result.text, partial_text=result.partial_text,
                      punctuated_text=punctuated.text if punctuated else None,
                      processing_ms=round((time.monotonic() - began) * 1000, 2),
                      model_ms=round(result.compute_ms + (punctuated.model_ms if punctuated else 0), 3),
                      warnings=warnings, segments=result.segments)
