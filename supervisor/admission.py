"""Memory admission: does a model fit before we load it, and which idle models to evict if it does not.

A model's expected footprint is its last measured Private_Dirty (kept in the cache directory across restarts,
per model and source) or, before any measurement, the catalog's estimate. Free memory is the smallest of: the
host's available memory, the container's cgroup headroom, and the configured budget for all models; loads in
flight count against it with their expected footprint, so two concurrent loads cannot both take the same room.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import psutil

from supervisor.errors import SupervisorError
from supervisor.slot import ModelSlot
from supervisor.states import ModelStatus

log = logging.getLogger(__name__)

MB = 1024 * 1024
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),                # v2
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def cgroup_headroom_mb() -> float | None:
    """Limit minus usage of this container's memory cgroup, when a real limit is set."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit != "max" and int(limit) < psutil.virtual_memory().total:
            return (int(limit) - usage) / MB
    return None


class Footprints:
    """Measured Private_Dirty per model and source, persisted as JSON in the cache directory."""

    def __init__(self, cache_dir: Path) -> None:
        self._path = cache_dir / "footprints.json"
        self._lock = threading.Lock()
        try:
            self._known: dict[str, float] = json.loads(self._path.read_text())
        except (OSError, ValueError):
            self._known = {}

    @staticmethod
    def key(slot: ModelSlot) -> str:
        return f"{slot.model_id}|{slot.config.source}"

    def expected_mb(self, slot: ModelSlot) -> float:
        return self._known.get(self.key(slot), slot.entry.estimated_memory_mb)

    def record(self, slot: ModelSlot, unique_mb: float) -> None:
        with self._lock:
            self._known[self.key(slot)] = round(unique_mb, 1)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._known, indent=1))
            os.replace(tmp, self._path)


class Admission:
    def __init__(self, supervisor, footprints: Footprints) -> None:
        self._sup = supervisor
        self.footprints = footprints
        self.lock = threading.Lock()   # held across check + start, so concurrent loads see each other

    def free_mb(self, excluding: ModelSlot) -> float:
        settings = self._sup.settings
        slots = [s for s in self._sup.slots.values() if s is not excluding]
        reserved = sum(self.footprints.expected_mb(s) for s in slots if s.status is ModelStatus.LOADING)
        candidates = [psutil.virtual_memory().available / MB - reserved]
        headroom = cgroup_headroom_mb()
        if headroom is not None:
            candidates.append(headroom - reserved)
        if settings.memory_budget_mb:
            held = sum(s.unique_memory_mb() for s in slots if s.status is ModelStatus.LOADED)
            candidates.append(settings.memory_budget_mb - held - reserved)
        return min(candidates)

    def admit(self, slot: ModelSlot) -> None:
        """Return when `slot` fits (after evicting idle models if allowed); else raise INSUFFICIENT_MEMORY."""
        need = self.footprints.expected_mb(slot) + self._sup.settings.memory_margin_mb
        free = self.free_mb(slot)
        for victim in self.eviction_order(slot) if free < need and self._sup.settings.evict_idle else []:
            log.warning("memory: evicting idle model %s to fit %s (needs %.0f MB, %.0f MB free)",
                        victim.model_id, slot.model_id, need, free)
            if self._sup.evict(victim):
                free = self.free_mb(slot)
            if free >= need:
                break
        if free < need:
            raise SupervisorError(
                "INSUFFICIENT_MEMORY", f"Not enough memory to load {slot.model_id}",
                f"needs {need:.0f} MB ({self.footprints.expected_mb(slot):.0f} MB model + "
                f"{self._sup.settings.memory_margin_mb:.0f} MB margin), {max(free, 0):.0f} MB free; unload a model "
                "or raise [server] memory_budget_mb", model_type=slot.model_id, needed_mb=round(need),
                free_mb=round(max(free, 0)))

    def eviction_order(self, loading: ModelSlot) -> list[ModelSlot]:
        """Idle, non-required, loaded models, least recently used first."""
        idle = [s for s in self._sup.slots.values()
                if s is not loading and s.status is ModelStatus.LOADED and not s.config.required
                and s.usage.in_flight == 0 and not self._sup.inference.streams.open_count(s.model_id)]
        return sorted(idle, key=lambda s: s.usage.last_used_monotonic)
