"""HTTP request and response bodies, as msgspec Structs (separate from the wire protocol's messages)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from supervisor.snapshot import CacheInfo, SystemInfo
from supervisor.views import JobView, ModelView, Sentence, TranscriptSegment

Timeout = Annotated[float, msgspec.Meta(gt=0, le=3600, description="seconds to wait for the model to be ready")]


# -- requests ---------------------------------------------------------------------------------------
class InfoRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    detailed: bool = False
    include_metrics: bool = False


class LoadRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    model_type: str
    force_reload: bool = False
    async_load: bool = True
    timeout: Timeout = 300.0


# -- responses --------------------------------------------------------------------------------------
class InfoResponse(msgspec.Struct, frozen=True):
    success: bool
    timestamp: datetime
    available_models: dict[str, ModelView]
    system_info: SystemInfo
    model_cache: CacheInfo


class LoadAccepted(msgspec.Struct, frozen=True, omit_defaults=True):
    """202 for an async load (200 when the model was already loaded)."""

    success: bool
    message: str
    model_type: str
    load_id: str
    async_: bool = msgspec.field(name="async")
    estimated_load_time: int
    current_status: str
    load_ids: dict[str, str] | None = None  # `all`: one load_id per model


class LoadCompleted(msgspec.Struct, frozen=True, omit_defaults=True):
    """200 for a sync load, once the model is ready."""

    success: bool
    message: str
    model_type: str
    load_id: str
    load_time_ms: float | None
    memory_usage_mb: float
    model_version: str
    status: str
    models: dict[str, LoadCompleted] | None = None  # `all`: each model's own result


class UnloadResponse(msgspec.Struct, frozen=True):
    success: bool
    message: str
    model_type: str
    memory_freed_mb: float
    unload_time_ms: float
    models_remaining: list[str]


class RegistryResponse(msgspec.Struct, frozen=True):
    """`PUT|DELETE /model/registry/{model_type}`: registered (`replaced`: over a stopped one), or forgotten."""

    success: bool
    message: str
    model_type: str
    replaced: bool = False


class JobResponse(msgspec.Struct, frozen=True):
    success: bool
    job: JobView


class HealthResponse(msgspec.Struct, frozen=True):
    success: bool
    status: str


class ReadyResponse(msgspec.Struct, frozen=True):
    success: bool
    ready: bool


class ModelReadyResponse(msgspec.Struct, frozen=True):
    success: bool
    model_type: str
    ready: bool
    status: str


class ErrorBody(msgspec.Struct, frozen=True):
    success: bool
    error: str
    error_code: str
    details: str


# -- inference ----------------------------------------------------------------------------------------
class PunctuateRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    text: Annotated[str, msgspec.Meta(min_length=1)]


class PunctuateResponse(msgspec.Struct, frozen=True):
    success: bool
    text: str
    model_type: str
    processing_ms: float
    cold_start: bool


class StreamOpenRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    punctuate: bool = False


class StreamOpenResponse(msgspec.Struct, frozen=True):
    success: bool
    stream_id: str
    sample_rate: int
    chunk_ms: int
    expires_in_s: float
    cold_start: bool
    model: str = ""   # the model the stream runs on (pass it as ?model= when it is not the kind's default)


class StreamTextResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    success: bool
    stream_id: str
    text: str
    partial_text: str
    processing_ms: float
    punctuated_text: str | None = None
    warnings: list[str] = []   # e.g. punctuation was asked for but is unavailable: the text is still here


class VadStreamResponse(msgspec.Struct, frozen=True):
    success: bool
    stream_id: str
    segments: list[list[int]]   # speech segments this audio closed, [start_ms, end_ms] from the stream start
    processing_ms: float


class StreamClosedResponse(msgspec.Struct, frozen=True):
    success: bool
    stream_id: str
    message: str


class TranscribeResponse(msgspec.Struct, frozen=True):
    success: bool
    text: str
    punctuated_text: str | None
    audio_ms: float
    processing_ms: float
    rtf: float
    cold_start: bool
    warnings: list[str] = []   # e.g. punctuation was asked for but is unavailable: the text is still here
    segments: list[TranscriptSegment] | None = None  # ?vad=true (default when the VAD is loaded): per speech segment
    model: str = ""                                   # the model that transcribed it
    timestamp: list[tuple[int, int]] | None = None    # asr models: each token's [start_ms, end_ms]
    sentence_info: list[Sentence] | None = None       # asr models: sentences (punctuated) with their times
    tags: dict[str, str] | None = None                # SenseVoice: language, emotion, event


class VadResponse(msgspec.Struct, frozen=True):
    success: bool
    segments: list[list[int]]   # [start_ms, end_ms] of each stretch of speech
    audio_ms: float
    processing_ms: float
    rtf: float
    cold_start: bool
