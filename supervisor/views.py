"""Typed snapshots the supervisor hands to its callers (the API serializes them; they carry no behaviour)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from model_procs.protocol import LoadTimings


class ModelDetails(msgspec.Struct, frozen=True):
    """`POST /model/info {"detailed": true}`: where the model came from and what its process holds."""

    source: str
    resolved_source: str | None
    device: str
    threads: int
    memory_unique_mb: float | None      # Private_Dirty: what unloading returns
    load_phases_ms: LoadTimings | None


class ModelMetrics(msgspec.Struct, frozen=True):
    loads: int
    restarts: int
    cache_hits: int


class ModelView(msgspec.Struct, frozen=True, omit_defaults=True):
    """One model as the reference's `/model/info` shows it, plus our lifecycle fields (DESIGN.md §5)."""

    model_id: str
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
    details: ModelDetails | None = None
    metrics: ModelMetrics | None = None


class JobView(msgspec.Struct, frozen=True, omit_defaults=True):
    """`GET /model/load/{load_id}`."""

    load_id: str
    model_type: str
    status: str
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
