"""Typed snapshots the supervisor hands to its callers (the API serializes them; they carry no behaviour)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from wire.model_config import ModelConfig
from wire.protocol import LoadTimings


class ModelDetails(msgspec.Struct, frozen=True):
    """`POST /model/info {"detailed": true}`: where the model came from and what its process holds."""

    source: str
    resolved_source: str | None
    device: str
    threads: int
    memory_unique_mb: float | None      # Private_Dirty: what unloading returns
    load_phases_ms: LoadTimings | None
    loader: str | None                   # "mapped": weights mapped from weights_file; "automodel": copied
    loader_note: str | None              # why the weights were not mapped
    weights_file: str | None             # the first of weights_files (the checkpoint, with the mapped loader)
    engine_note: str | None              # engine onnx asked for, torch running: why
    config: ModelConfig                  # autoload, keep_alive_s, required, preload, priority, ...
    open_streams: int
    weights_files: tuple[str, ...] = ()  # every file its weights are mapped from: checkpoint, ONNX parts


class ReplicaView(msgspec.Struct, frozen=True, omit_defaults=True):
    """One process of a model: `starting`, `idle`, `busy`, `draining` (replaced or scaled down: finishing its
    streams) or `stopping`."""

    pid: int | None
    state: str
    in_flight: int
    memory_usage_mb: float          # RSS, refreshed every second off the request path
    memory_unique_mb: float         # Private_Dirty: what stopping it returns
    open_streams: int
    weights_files: tuple[str, ...] = ()  # every file its weights are mapped from: checkpoint, ONNX parts
    memory_shared_weights_mb: float | None = None  # its model's mapped weights: the same pages in every replica
    gpu_memory_mb: float | None = None             # NVML; only where a GPU is present
    node: str | None = None                        # a fleet: the Ray node it runs on


class ModelMetrics(msgspec.Struct, frozen=True):
    loads: int
    restarts: int
    cache_hits: int
    cold_starts: int
    idle_unloads: int
    evictions: int
    in_flight: int
    queued: int
    requests_by_outcome: dict[str, int]
    latency: LatencyPercentiles | None
    batches: int = 0                    # hand-offs to its processes
    mean_batch: float | None = None     # requests (pieces) per hand-off
    cpu_s: float = 0.0                  # its processes' CPU time on requests
    audio_s: float = 0.0                # the audio in those requests
    cpu_per_audio_s: float | None = None  # cores one real-time stream of it costs (cpu_s / audio_s)


class ModelView(msgspec.Struct, frozen=True, omit_defaults=True):
    """One model as the reference's `/model/info` shows it, plus our lifecycle fields."""

    model_id: str
    kind: str                           # streaming_asr | asr | punctuation | vad: what it does, which routes use it
    display_name: str
    description: str
    version: str
    provider: str
    language: str
    capabilities: list[str]
    loaded: bool
    loading: bool
    status: str
    pid: int | None
    memory_usage_mb: float
    load_time_ms: float | None
    last_used: datetime | None
    total_requests: int
    success_rate: float
    restarts: int
    last_error: str | None
    required: bool
    engine: str                         # what runs it: "torch" or "onnx" (configured, until a process says)
    quantize: str                       # "none" or "int8" (onnx)
    replicas: list[ReplicaView] = []    # one per process; the seed's pid is the first one's
    memory_shared_weights_mb: float | None = None  # mapped weights in the page cache, counted once per model
    warm_mb: float | None = None        # unloaded with keep_warm: weights still cached for the next load
    gpu_memory_mb: float | None = None  # NVML, every replica together; only where a GPU is present
    live_sessions: int = 0              # WebSocket sessions using it now (each also a stream or requests)
    details: ModelDetails | None = None
    metrics: ModelMetrics | None = None

    @property
    def config(self) -> ModelConfig:
        """The model's settings: a published snapshot's views carry their details (only answers leave them out)."""
        if self.details is None:
            raise ValueError(f"the view of {self.model_id} carries no details")
        return self.details.config


class JobView(msgspec.Struct, frozen=True, omit_defaults=True):
    """`GET /model/load/{load_id}`."""

    load_id: str
    model_type: str
    status: str
    phase: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_ms: float
    error: str | None
    error_code: str | None
    details: str | None
    jobs: dict[str, str] | None = None  # for `all`: model -> its own load_id


class UnloadView(msgspec.Struct, frozen=True):
    """`DELETE /model/unload/{model_type}`."""

    model_type: str
    memory_freed_mb: float
    unload_time_ms: float
    models_remaining: list[str]
    was_loaded: bool


class PunctuationResult(msgspec.Struct, frozen=True):
    text: str
    processing_ms: float
    cold_start: bool
    model_ms: float                  # time inside the model, as its process measured it


class StreamOpened(msgspec.Struct, frozen=True):
    stream_id: str
    sample_rate: int
    chunk_ms: int
    expires_in_s: float
    cold_start: bool
    model: str = ""


class StreamText(msgspec.Struct, frozen=True, omit_defaults=True):
    text: str                        # new text from this call (the final text, for finish)
    partial_text: str                # all text so far
    punctuated_text: str | None = None
    processing_ms: float = 0.0
    model_ms: float = 0.0
    warnings: list[str] = []         # what was asked and could not be done (punctuation unavailable)
    segments: list[list[int]] = []  # VAD streams: speech segments closed by this audio, [start_ms, end_ms]


class TranscriptSegment(msgspec.Struct, frozen=True):
    """One stretch of speech of a VAD-split transcription, in ms from the recording's start."""

    start_ms: int
    end_ms: int
    text: str
    punctuated_text: str | None = None


class Sentence(msgspec.Struct, frozen=True):
    """FunASR's `sentence_info`: a sentence (punctuated, where punctuation served) and its tokens' times, in ms
    from the recording's start."""

    text: str
    start: int
    end: int
    timestamp: list[list[int]]  # [start_ms, end_ms] per token (JSON Schema: pairs as arrays)


class Transcript(msgspec.Struct, frozen=True):
    text: str
    punctuated_text: str | None
    audio_ms: float
    processing_ms: float
    rtf: float                       # processing time / audio duration
    cold_start: bool
    model_ms: float
    warnings: list[str] = []
    segments: list[TranscriptSegment] | None = None  # split on the VAD's speech segments (None: not split)
    model: str = ""                  # the model that transcribed it
    timestamp: list[list[int]] | None = None   # asr models: each token's [start_ms, end_ms]
    sentence_info: list[Sentence] | None = None      # asr models: sentences with their times
    tags: dict[str, str] | None = None               # SenseVoice: language, emotion, event
    tokens: list[str] | None = None                  # asr models: the token each `timestamp` times


class SpeechSegments(msgspec.Struct, frozen=True):
    """`POST /vad`: where speech is, `[start_ms, end_ms]` from the recording's start."""

    segments: list[list[int]]
    audio_ms: float
    processing_ms: float
    rtf: float
    cold_start: bool
    model_ms: float


class LatencyPercentiles(msgspec.Struct, frozen=True):
    p50_ms: float
    p95_ms: float
    p99_ms: float


class SystemInfo(msgspec.Struct, frozen=True):
    total_memory_gb: float              # the container's memory limit where one is set, else the host's memory
    available_memory_gb: float          # what is left of that (page cache the kernel can reclaim counts as free)
    cpu_cores: int
    python_version: str
    framework: str
    uptime_hours: float
    memory_limit: str | None = None     # "cgroup v1" / "cgroup v2": the memory figures are the container's


class CacheInfo(msgspec.Struct, frozen=True):
    cache_enabled: bool
    cache_directory: str
    cache_size_mb: float
    cache_hit_rate: float
