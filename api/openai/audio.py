"""OpenAI's audio API on our managed models: `POST /v1/audio/transcriptions` (multipart, as the `openai` SDK sends
it), `/v1/audio/translations` (refused: FunASR's models do not translate) and `GET /v1/models`.

A transcription is the same queued work as `/asr/transcribe`: `model` names one of our `asr` or `streaming_asr`
models (`whisper-1`, or none, is the default transcriber), `prompt` is hotwords, and the answer is rendered in the
`response_format` asked for. `stream=true` answers Server-Sent Events, one `transcript.text.delta` per VAD segment
as it is transcribed, then `transcript.text.done`.
"""

from __future__ import annotations

from typing import Iterator

import falcon
import msgspec

from api.common.decode import decode_audio
from api.common.deps import ModelWork
from api.common.replies import best_text, mark_cold_start, server_timing
from api.openai.formats import (FORMATS, ModelCard, ModelList, Transcription, Usage, delta_event,
                                done_event, event, seconds, subtitles, verbose)
from flows.transcription import TRANSCRIBERS
from wire.errors import ErrorCode, SupervisorError, shown

DEFAULT_MODELS = ("", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")  # the default transcriber
FORM_SLACK = 1024 * 1024  # the multipart framing and the other fields, beyond the audio itself
SUBTITLES = {"srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


class TranscriptionForm(msgspec.Struct):
    file: bytes = b""
    model: str = ""
    language: str = ""
    prompt: str = ""
    response_format: str = "json"
    stream: bool = False
    granularities: set[str] = set()


def invalid(message: str, details: str) -> SupervisorError:
    return SupervisorError(ErrorCode.INVALID_REQUEST, message, details)


def read_form(req: falcon.Request, limit: int) -> TranscriptionForm:
    """The multipart form, each field checked; the file is held in memory up to `max_audio_mb`."""
    if not (req.content_type or "").lower().startswith("multipart/form-data"):
        raise SupervisorError(ErrorCode.UNSUPPORTED_MEDIA, "Expected a multipart form",
                              "send multipart/form-data with the audio in `file` (as the openai SDK does)")
    if req.content_length is not None and req.content_length > limit + FORM_SLACK:
        raise SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Audio too large",
                              f"audio is limited to {limit} bytes by [server] max_audio_mb in the config")
    form = TranscriptionForm()
    try:
        for part in req.get_media():
            name = part.name
            if name == "file":
                form.file = part.data
            elif name in ("model", "language", "prompt", "response_format"):
                setattr(form, name, part.text.strip())
            elif name == "stream":
                form.stream = part.text.strip().lower() == "true"
            elif name in ("timestamp_granularities[]", "timestamp_granularities"):
                form.granularities.add(part.text.strip())
    except falcon.MediaMalformedError as exc:
        raise invalid("Malformed multipart form", str(exc.description or exc)) from None
    except falcon.HTTPError as exc:  # a part over the buffer limit
        raise SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Audio too large",
                              str(exc.description or exc.title)) from None
    if not form.file:
        raise invalid("No audio file", "send the audio as the multipart field `file`")
    if form.response_format not in FORMATS:
        raise invalid(f"Unsupported response_format '{shown(form.response_format)}'",
                      f"use one of: {', '.join(FORMATS)}")
    unknown = form.granularities - {"word", "segment"}
    if unknown:
        raise invalid("Unsupported timestamp_granularities", f"{sorted(unknown)}: use word and/or segment")
    return form


class TranscriptionsResource(ModelWork):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = read_form(req, self.limits.audio_bytes)
        model = self.supervisor.model_for(TRANSCRIBERS, None if form.model in DEFAULT_MODELS else form.model)
        pcm = decode_audio(form.file, self.limits.audio_s, self.limits.decodes)
        if form.stream:
            resp.content_type = "text/event-stream"
            resp.set_header("Cache-Control", "no-cache")
            resp.stream = self.events(pcm, model, form.prompt)
            return
        split = self.supervisor.has_model("vad")  # every format (and the stream) split alike: the same text
        with self.gate.admit():
            result = self.flows.transcribe(pcm, True, True if split else False, model, form.prompt)
        text = best_text(result.text, result.punctuated_text)
        if form.response_format == "text":
            resp.content_type, resp.text = "text/plain; charset=utf-8", text
        elif form.response_format in SUBTITLES:
            resp.content_type, resp.text = SUBTITLES[form.response_format], subtitles(result, form.response_format)
        elif form.response_format == "verbose_json":
            resp.media = verbose(result, form.language, form.granularities)
        else:
            resp.media = Transcription(text=text, usage=Usage(seconds(result.audio_ms)))
        mark_cold_start(resp, result.cold_start)
        server_timing(resp, result.model_ms)

    def events(self, pcm: bytes, model: str, hotwords: str) -> Iterator[bytes]:
        """One delta per segment as it is transcribed; an error midway is an `error` event, then the end."""
        texts: list[str] = []
        with self.gate.admit():
            try:
                for segment in self.flows.transcribe_as_heard(pcm, model, hotwords):
                    texts.append(best_text(segment.text, segment.punctuated_text))
                    yield delta_event(segment)
            except SupervisorError as exc:
                yield event({"type": "error", "error": {"message": f"{exc.message}: {exc.details}",
                                                        "type": "server_error", "code": exc.code.lower()}})
                return
        yield done_event("".join(texts), len(pcm) / 32)


class TranslationsResource:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise invalid("Translation is not supported",
                      "FunASR's models transcribe in the language spoken; use /v1/audio/transcriptions")


class ModelsResource:
    """The speech models a transcription may name (and `whisper-1`, the default's alias, is not listed)."""

    def __init__(self, supervisor) -> None:
        self.supervisor = supervisor

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        created = int(self.supervisor.started_at)
        resp.media = ModelList([ModelCard(name, created) for name, view in self.supervisor.snapshot.models.items()
                                if view.kind in TRANSCRIBERS])
