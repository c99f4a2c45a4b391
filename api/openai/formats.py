"""OpenAI's transcription answers, from our Transcript: `json`, `text`, `srt`, `vtt`, `verbose_json`, and the
Server-Sent Events of `stream=true`. Whisper-only fields (tokens, log-probabilities) carry neutral values."""

from __future__ import annotations

import msgspec

from api.common.replies import best_text
from wire.views import Transcript, TranscriptSegment
from wire.errors import ErrorCode

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
_encode = msgspec.json.Encoder().encode


class OpenAIErrorDetail(msgspec.Struct, frozen=True):
    message: str
    type: str                 # invalid_request_error (4xx) or server_error (5xx)
    param: str | None
    code: str                 # our error code, lower-case (model_not_found, ...)


class OpenAIError(msgspec.Struct, frozen=True):
    """Errors on /v1/ routes, in the shape OpenAI's SDKs parse."""

    error: OpenAIErrorDetail


def openai_error(status: int, code: str, message: str, details: str) -> OpenAIError:
    return OpenAIError(OpenAIErrorDetail(message=f"{message}: {details}" if details else message,
                                         type="invalid_request_error" if status < 500 else "server_error",
                                         param="model" if code == ErrorCode.MODEL_NOT_FOUND else None,
                                         code=code.lower()))


class Usage(msgspec.Struct, frozen=True):
    seconds: float
    type: str = "duration"


class Transcription(msgspec.Struct, frozen=True):
    text: str
    usage: Usage


class Segment(msgspec.Struct, frozen=True):
    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: list[int] = []
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    no_speech_prob: float = 0.0


class Word(msgspec.Struct, frozen=True):
    word: str
    start: float
    end: float


class VerboseTranscription(msgspec.Struct, frozen=True, omit_defaults=True):
    text: str
    language: str
    duration: float
    usage: Usage
    task: str = "transcribe"
    segments: list[Segment] | None = None
    words: list[Word] | None = None


class ModelCard(msgspec.Struct, frozen=True):
    id: str
    created: int
    object: str = "model"
    owned_by: str = "funasr-supervisor"


class ModelList(msgspec.Struct, frozen=True):
    data: list[ModelCard]
    object: str = "list"


def seconds(ms: float) -> float:
    return round(ms / 1000, 3)


def segments_of(transcript: Transcript) -> list[TranscriptSegment]:
    """The VAD's segments, or the whole recording as one."""
    return transcript.segments or [TranscriptSegment(0, int(transcript.audio_ms), transcript.text,
                                                     transcript.punctuated_text)]


def verbose(transcript: Transcript, language: str, granularities: set[str]) -> VerboseTranscription:
    segments = [Segment(id=i, start=seconds(s.start_ms), end=seconds(s.end_ms),
                        text=best_text(s.text, s.punctuated_text)) for i, s in enumerate(segments_of(transcript))]
    words = [Word(token, seconds(start), seconds(end))
             for token, (start, end) in zip(transcript.tokens or [], transcript.timestamp or [])]
    return VerboseTranscription(text=best_text(transcript.text, transcript.punctuated_text),
                                language=language or (transcript.tags or {}).get("language", "chinese"),
                                duration=seconds(transcript.audio_ms), usage=Usage(seconds(transcript.audio_ms)),
                                segments=segments if "segment" in granularities or not granularities else None,
                                words=words if "word" in granularities else None)


def clock(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def subtitles(transcript: Transcript, kind: str) -> str:
    """SubRip (`srt`) or WebVTT (`vtt`), one cue per segment."""
    separator = "," if kind == "srt" else "."
    cues = [f"{clock(s.start_ms, separator)} --> {clock(s.end_ms, separator)}\n{best_text(s.text, s.punctuated_text)}"
            for s in segments_of(transcript)]
    if kind == "srt":
        return "\n\n".join(f"{i}\n{cue}" for i, cue in enumerate(cues, 1)) + "\n"
    return "WEBVTT\n\n" + "\n\n".join(cues) + "\n"


def event(payload: dict) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def delta_event(segment: TranscriptSegment) -> bytes:
    return event({"type": "transcript.text.delta", "delta": best_text(segment.text, segment.punctuated_text)})


def done_event(text: str, audio_ms: float) -> bytes:
    return event({"type": "transcript.text.done", "text": text,
                  "usage": {"type": "duration", "seconds": seconds(audio_ms)}})
