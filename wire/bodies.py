"""HTTP request and response bodies, as msgspec Structs (separate from the wire protocol's messages)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec

from wire.views import CacheInfo, JobView, ModelView, SpeechSegments, StreamOpened, SystemInfo, Transcript, UnloadView

T = TypeVar("T")
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
class InfoResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    success: bool
    timestamp: datetime
    available_models: dict[str, ModelView]
    system_info: SystemInfo
    model_cache: CacheInfo
    nodes: dict[str, SystemInfo] | None = None   # a fleet: each Ray node's own; system_info is their totals


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


# -- answers that are a supervisor view plus `success`: the view's shape is written once, in wire.views --
class UnloadResponse(UnloadView, frozen=True, kw_only=True):
    success: bool = True
    message: str


class StreamOpenResponse(StreamOpened, frozen=True, kw_only=True):
    success: bool = True


class TranscribeResponse(Transcript, frozen=True, kw_only=True):
    success: bool = True


class VadResponse(SpeechSegments, frozen=True, kw_only=True):
    success: bool = True


def answer(response: type[T], view: msgspec.Struct, **extra: Any) -> T:
    """A response built from the view it extends (and its own fields)."""
    return response(**msgspec.structs.asdict(view), **extra)
