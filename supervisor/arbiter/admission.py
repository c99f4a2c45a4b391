"""Memory admission: does a model fit before we load it, and which idle models to evict if it does not.

A replica's expected footprint is its model's last measured Private_Dirty (kept in the cache directory across
restarts, per model and source) or, before any measurement, the catalog's estimate. Mapped weights are shared by
every replica of a model, so they count once per model: a model's first replica needs its private footprint
plus its weights, the next ones their private footprint only. The kernel reports mapped file pages as available
(it could reclaim them), so the weights of models in use are taken off the host's available memory.
Free memory is the smallest of: that, the container's cgroup headroom (its limit less its working set:
`supervisor.cgroup`), and the configured budget for all models;
loads in flight count against it with their expected footprint, so two concurrent loads cannot both take the
same room.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import psutil

from supervisor import cgroup
from supervisor.config import ServerSettings
from supervisor.replica import Model
from supervisor.states import ModelStatus
from wire.errors import ErrorCode, SupervisorError

log = logging.getLogger(__name__)


class Footprints:
    """Measured Private_Dirty per replica and mapped weights per model, for each model and source, persisted as
    JSON in the cache directory."""

    def __init__(self, cache_dir: Path) -> None:
        self._path = cache_dir / "footprints.json"
        self._lock = threading.Lock()
        try:
            self._known: dict[str, float] = json.loads(self._path.read_text())
        except (OSError, ValueError):
            self._known = {}

    @staticmethod
    def key(model: Model) -> str:
        return f"{model.model_id}|{model.config.source}"

    def expected_mb(self, model: Model) -> float:
        """One replica's own memory."""
        return self._known.get(self.key(model), model.entry.estimated_memory_mb)

    def expected_weights_mb(self, model: Model) -> float:
        """The model's shared weights (0 until a mapped load measured them)."""
        return self._known.get(self.key(model) + "|weights", 0.0)

    def record(self, model: Model, unique_mb: float, weights_mb: float) -> None:
        with self._lock:
            self._known[self.key(model)] = round(unique_mb, 1)
            self._known[self.key(model) + "|weights"] = round(weights_mb, 1)
            tmp = self._path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(self._known, indent=1))
                os.replace(tmp, self._path)
            except OSError as exc:  # the figure still counts in memory; only its persistence is lost
                log.warning("footprints: could not save %s: %s", self._path, exc)


class Admission:
    """Arbiter thread only. Each replica counts its model's footprint: starting ones as reserved, serving ones
    as measured."""

    def __init__(self, models: dict[str, Model], settings: ServerSettings, footprints: Footprints,
                 host_available_mb: Callable[[], float] | None = None) -> None:
        self._models, self._settings = models, settings
        self.footprints = footprints
        self._host_available_mb = host_available_mb or (lambda: psutil.virtual_memory().available / cgroup.MB)

    def free_mb(self) -> float:
        models = self._models.values()
        reserved = sum(self.footprints.expected_mb(m) for m in models for r in m.replicas
                       if not r.ready and not r.stopping)
        reserved += sum(self.footprints.expected_weights_mb(m) for m in models
                        if m.live() and not any(r.ready for r in m.live()))  # first replicas mapping them now
        weights = sum(m.weights_mb for m in models if m.holds_weights())
        candidates = [self._host_available_mb() - weights - reserved]
        headroom = cgroup.headroom_mb()
        if headroom is not None:
            candidates.append(headroom - reserved)
        budget = self._settings.memory_budget_mb
        if budget:
            held = sum(r.unique_mb for m in models for r in m.replicas if r.ready) + weights
            candidates.append(budget - held - reserved)
        return min(candidates)

    def need_mb(self, model: Model) -> float:
        """A new replica of `model`: its own memory, the weights if no process of the model maps them yet,
        and the margin."""
        weights = 0.0 if model.live() else self.footprints.expected_weights_mb(model)
        return self.footprints.expected_mb(model) + weights + self._settings.memory_margin_mb

    def fits(self, model: Model) -> bool:
        return self.free_mb() >= self.need_mb(model)

    def admit(self, model: Model) -> list[Model]:
        """[] when a replica of `model` fits now; the idle models to evict when that would make room;
        INSUFFICIENT_MEMORY otherwise."""
        need, free = self.need_mb(model), self.free_mb()
        if free >= need:
            return []
        victims, gain = [], 0.0
        for victim in self.eviction_order(model) if self._settings.evict_idle else []:
            victims.append(victim)
            gain += sum(r.unique_mb for r in victim.replicas) + victim.weights_mb
            if free + gain >= need:
                return victims
        raise SupervisorError(
            ErrorCode.INSUFFICIENT_MEMORY, f"Not enough memory to load {model.model_id}",
            f"needs {need:.0f} MB ({need - self._settings.memory_margin_mb:.0f} MB model + "
            f"{self._settings.memory_margin_mb:.0f} MB margin), {max(free, 0):.0f} MB free; unload a model "
            "or raise [server] memory_budget_mb", model_type=model.model_id, needed_mb=round(need),
            free_mb=round(max(free, 0)))

    def eviction_order(self, loading: Model) -> list[Model]:
        """Idle, non-required, loaded models, least recently used first."""
        idle = [m for m in self._models.values()
                if m is not loading and m.status is ModelStatus.LOADED and not m.config.required
                and not m.busy() and m.job is None]
        return sorted(idle, key=lambda m: m.usage.last_used_monotonic)
