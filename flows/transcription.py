"""What the server does with several models for one recording: a transcription split on the VAD's speech
segments, each segment its own request, punctuated where punctuation serves, with sentences and times.

Each step is an ordinary request, so it queues, cold-starts and is counted like any other.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future
from typing import Iterator

from flows.requests import Requests
from flows.sentences import sentences, shifted
from supervisor.work import WorkResult
from wire.audio import BYTES_PER_MS
from wire.errors import SupervisorError
from wire.views import SpeechSegments, Transcript, TranscriptSegment

log = logging.getLogger(__name__)

TRANSCRIBERS = ("asr", "streaming_asr")  # an offline model when one is configured, else the streaming one


def transcribe(flows: Requests, model_id: str, pcm: bytes, punctuate: bool, vad: bool | None,
               hotwords: str) -> Transcript:
    """Each VAD segment is its own request, so replicas take them in parallel; an `asr` model's tokens keep
    their times, moved to the recording's clock, and make sentences."""
    began = time.monotonic()
    warnings: list[str] = []
    speech = speech_of(flows, pcm, vad, warnings)
    spans = [(0, 0)] if speech is None else speech.segments
    pieces = [pcm] if speech is None else [pcm[s * BYTES_PER_MS:e * BYTES_PER_MS] for s, e in spans]
    results = recognised(flows, model_id, pieces, hotwords)
    texts = [r.text for r in results]
    punctuated = [flows.punctuated_or_warn(t, warnings) for t in texts] if punctuate else []
    punctuated_texts = [p.text if p else None for p in punctuated] if punctuate else [None] * len(texts)
    whole_punctuated = "".join(t or "" for t in punctuated_texts) if punctuate and None not in punctuated_texts \
        else None
    words = [shifted(r.words, start) for r, (start, _) in zip(results, spans)]
    timed = any(words)
    info = [s for w, text in zip(words, punctuated_texts) for s in sentences(w, text)] if timed else None
    segments = None if speech is None else [
        TranscriptSegment(start_ms=start, end_ms=end, text=text, punctuated_text=punctuated_text)
        for (start, end), text, punctuated_text in zip(spans, texts, punctuated_texts)]
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
                      timestamp=[[s, e] for w in words for _, s, e in w] if timed else None, sentence_info=info,
                      tokens=[t for w in words for t, _, _ in w] if timed else None,
                      tags=tags or None)


def recognised(flows: Requests, model_id: str, pieces: list[bytes], hotwords: str) -> list[WorkResult]:
    return list(recognised_in_order(flows, model_id, pieces, hotwords))


def recognised_in_order(flows: Requests, model_id: str, pieces: list[bytes], hotwords: str) -> Iterator[WorkResult]:
    """Each piece its own request, up to max_replicas + 1 queued at a time: idle replicas take them in
    parallel, other clients' requests interleave, and a long file never fills the queue. Results come in the
    pieces' order, each as soon as it and those before it are done."""
    window = flows.sup.view(model_id).config.replica_limit + 1
    waiting: deque[tuple[Future, int]] = deque()
    for piece in pieces:
        if len(waiting) == window:
            yield flows.waiter.result(*waiting.popleft())
        waiting.append((flows.recognising(model_id, piece, hotwords), len(piece)))
    while waiting:
        yield flows.waiter.result(*waiting.popleft())


def segments_as_heard(flows: Requests, model_id: str, pcm: bytes, speech: SpeechSegments | None, punctuate: bool,
                      hotwords: str) -> Iterator[TranscriptSegment]:
    """A recording's VAD segments (or, without them, the whole) transcribed and punctuated where punctuation
    serves, each yielded as soon as it is ready: what a streamed answer sends while the rest is being heard."""
    spans = speech.segments if speech is not None else [(0, len(pcm) // BYTES_PER_MS)]
    pieces = [pcm[s * BYTES_PER_MS:e * BYTES_PER_MS] for s, e in spans]
    for (start, end), result in zip(spans, recognised_in_order(flows, model_id, pieces, hotwords)):
        punctuated = flows.punctuated_or_warn(result.text, []) if punctuate else None
        yield TranscriptSegment(start_ms=start, end_ms=end, text=result.text,
                                punctuated_text=punctuated.text if punctuated else None)


def speech_of(flows: Requests, pcm: bytes, vad: bool | None, warnings: list[str]) -> SpeechSegments | None:
    """Asked for (`vad` true: its errors are the answer), or by default when the VAD is loaded (then an
    error only costs the split: the whole recording is transcribed, with a warning)."""
    if vad is False:
        return None
    if vad is None:
        try:
            if flows.sup.view(flows.sup.model_for(("vad",))).status != "loaded":
                return None
        except SupervisorError:  # no VAD configured
            return None
    try:
        return flows.detect_speech(pcm)
    except SupervisorError as exc:
        if vad:
            raise
        log.warning("VAD unavailable, transcribing the recording whole: %s %s", exc.code, exc.message)
        warnings.append(f"VAD unavailable ({exc.code}: {exc.message}); the recording was not split")
        return None
