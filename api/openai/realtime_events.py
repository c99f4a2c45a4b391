"""OpenAI Realtime transcription events, as the `openai` SDK sends and parses them (GA and beta dialects).

Client events are one tagged union on `type`, decoded by one decoder; unknown fields are ignored, as OpenAI does.
Server events are Structs tagged the same way, so each encodes with its `type`.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec


class Model(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Event(Model, tag_field="type", frozen=True, kw_only=True):
    event_id: str | None = None


# -- session settings (both dialects) ----------------------------------------------------------------------------
class AudioFormat(Model, frozen=True):
    type: str = "audio/pcm"            # audio/pcm (PCM16), audio/pcmu, audio/pcma
    rate: int = 24000


class Transcription(Model, frozen=True):
    model: str | None = None           # one of our model names; whisper-1 and gpt-4o-*transcribe: the default
    language: str | None = None
    prompt: str | None = None          # hotwords


class TurnDetection(Model, frozen=True):
    type: str = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None


class AudioInput(Model, frozen=True):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None | msgspec.UnsetType = msgspec.UNSET   # null: commits by the client
    noise_reduction: Any = None


class Audio(Model, frozen=True):
    input: AudioInput | None = None


class Session(Model, frozen=True):
    """GA `session.update`'s session (type `transcription`)."""

    type: str = "transcription"
    audio: Audio | None = None
    include: list[str] | None = None


class BetaSession(Model, frozen=True):
    """Beta `transcription_session.update`'s session."""

    input_audio_format: str | None = None           # pcm16, g711_ulaw, g711_alaw
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None | msgspec.UnsetType = msgspec.UNSET
    input_audio_noise_reduction: Any = None
    include: list[str] | None = None


# -- client events -------------------------------------------------------------------------------------------------
class SessionUpdate(Event, tag="session.update", frozen=True):
    session: Session = Session()


class TranscriptionSessionUpdate(Event, tag="transcription_session.update", frozen=True):
    session: BetaSession = BetaSession()


class Append(Event, tag="input_audio_buffer.append", frozen=True):
    audio: str                         # base64


class Commit(Event, tag="input_audio_buffer.commit", frozen=True):
    pass


class Clear(Event, tag="input_audio_buffer.clear", frozen=True):
    pass


ClientEvent = Union[SessionUpdate, TranscriptionSessionUpdate, Append, Commit, Clear]
client_events = msgspec.json.Decoder(ClientEvent)


# -- server events ---------------------------------------------------------------------------------------------------
class SessionEvent(Event, tag="session.created", frozen=True):
    session: Any                       # a Session or BetaSession, as the client's dialect set it


class SessionUpdated(SessionEvent, tag="session.updated", frozen=True):
    pass


class TranscriptionSessionUpdated(SessionEvent, tag="transcription_session.updated", frozen=True):
    pass


class SpeechStartedEvent(Event, tag="input_audio_buffer.speech_started", frozen=True):
    audio_start_ms: int
    item_id: str


class SpeechStoppedEvent(Event, tag="input_audio_buffer.speech_stopped", frozen=True):
    audio_end_ms: int
    item_id: str


class Committed(Event, tag="input_audio_buffer.committed", frozen=True):
    item_id: str
    previous_item_id: str | None


class Cleared(Event, tag="input_audio_buffer.cleared", frozen=True):
    pass


class Delta(Event, tag="conversation.item.input_audio_transcription.delta", frozen=True):
    item_id: str
    content_index: int
    delta: str


class Usage(Model, frozen=True):
    seconds: float
    type: str = "duration"


class Completed(Event, tag="conversation.item.input_audio_transcription.completed", frozen=True):
    item_id: str
    content_index: int
    transcript: str
    usage: Usage


class ErrorDetail(Model, frozen=True):
    type: str                          # invalid_request_error | server_error
    code: str                          # our error code, lower-case
    message: str
    param: str | None = None
    event_id: str | None = None        # the client event it answers


class Failed(Event, tag="conversation.item.input_audio_transcription.failed", frozen=True):
    item_id: str
    content_index: int
    error: ErrorDetail


class ErrorEvent(Event, tag="error", frozen=True):
    error: ErrorDetail


encode = msgspec.json.Encoder().encode
