"""The one object a protocol adapter calls for inference: every flow, on one facade."""

from __future__ import annotations

from typing import Iterator

from flows.pcm import check_pcm
from flows.requests import Requests
from flows.transcription import TRANSCRIBERS, segments_as_heard, transcribe
from wire.views import Transcript, TranscriptSegment


class Flows(Requests):
    """Every flow a protocol adapter calls: the single requests, and whole recordings across models."""

    def transcribe(self, pcm: bytes, punctuate: bool, vad: bool | None = None, model: str | None = None,
                   hotwords: str = "") -> Transcript:
        """A whole recording, on an `asr` model when one is configured, else the streaming model; split on the
        VAD's speech segments when `vad` is true, or when it is None and the VAD is loaded."""
        model_id = self.sup.model_for(TRANSCRIBERS, model)
        self.refused_counted(model_id, lambda: check_pcm(pcm))
        return transcribe(self, model_id, pcm, punctuate, vad, hotwords)

    def transcribe_as_heard(self, pcm: bytes, model: str | None = None,
                            hotwords: str = "") -> Iterator[TranscriptSegment]:
        """A recording's segments (the VAD's, when a VAD is configured; else the whole), punctuated, each as soon
        as it is transcribed. The VAD runs before this returns, so its errors are raised here."""
        model_id = self.sup.model_for(TRANSCRIBERS, model)
        self.refused_counted(model_id, lambda: check_pcm(pcm))
        speech = self.detect_speech(pcm) if self.sup.has_model("vad") else None
        return segments_as_heard(self, model_id, pcm, speech, True, hotwords)
