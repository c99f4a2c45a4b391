"""The arbiter's periodic checks: heartbeats, stream expiry, queue deadlines, scaling, memory figures, preload.

One timer on the loop, every quarter second; nothing here blocks (memory reads go to the executor).
"""

from __future__ import annotations

import logging
import time

from supervisor.replica import Model
from supervisor.snapshot import directory_size_mb
from supervisor.states import ModelStatus

log = logging.getLogger(__name__)

TICK_S = 0.25
MEMORY_EVERY_S = 1.0
CACHE_SIZE_EVERY_S = 5.0


def preload_order(models: dict[str, Model]) -> list[str]:
    """The reference's ProductionModelManager order: required first, then by priority, highest first."""
    chosen = [m for m, model in models.items() if model.config.preload]
    return sorted(chosen, key=lambda m: (not models[m].config.required, -models[m].config.priority))


class Housekeeping:
    def __init__(self, arbiter) -> None:
        self.arb = arbiter
        self._memory_read_at = 0.0
        self._cache_read_at = 0.0

    def start(self) -> None:
        self.arb.loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        try:
            self._watchdog()
            self._expire_streams()
            for model in self.arb.models.values():
                self.arb.dispatch.expire_queue(model)
                self._scale(model)
            if time.monotonic() - self._memory_read_at >= MEMORY_EVERY_S:
                self._memory_read_at = time.monotonic()
                self.arb.replicas.refresh_memory()
            if time.monotonic() - self._cache_read_at >= CACHE_SIZE_EVERY_S:
                self.refresh_cache_size()
        finally:
            self.arb.loop.call_later(TICK_S, self._tick)

    def refresh_cache_size(self) -> None:
        """Walked off the loop every few seconds, and after each load (it may have fetched or made files)."""
        self._cache_read_at = time.monotonic()
        self.arb.loop.offload(lambda: directory_size_mb(self.arb.cache_dir), self._cache_size_read)

    def _cache_size_read(self, size_mb: float | None, _) -> None:
        if size_mb is not None:
            self.arb.cache_size_mb = size_mb
            self.arb.changed()

    def _watchdog(self) -> None:
        """Kill serving processes that stopped beating; silence counts only while the loop was listening."""
        timeout = self.arb.settings.heartbeat_timeout_s
        listening_since = self.arb.loop.resumed_at
        now = time.monotonic()
        for model in self.arb.models.values():
            for replica in model.replicas:
                silent = now - max(replica.last_heartbeat, listening_since)
                if replica.ready and not replica.stopping and silent > timeout:
                    replica.kill(f"no heartbeat for {silent:.1f} s (hung)")

    def _expire_streams(self) -> None:
        expired = self.arb.streams.take_expired()
        for stream in expired:
            self.arb.dispatch.drop_stream(stream.identity, stream.stream_id)
        if expired:
            log.info("streams: %d expired after being idle", len(expired))
            self.arb.changed()

    def _scale(self, model: Model) -> None:
        if model.status is not ModelStatus.LOADED or self.arb.closing:
            return
        config, now = model.config, time.monotonic()
        current = model.current()
        starting = any(not r.ready for r in current)
        waited_ms = (now - model.queue[0].enqueued_at) * 1000 if model.queue else 0.0
        wanted = len(current) < config.min_replicas or (waited_ms > config.scale_up_after_ms and not starting)
        if wanted and len(current) < config.max_replicas and now >= model.scale_blocked_until \
                and self.arb.admission.fits(model):
            log.info("model %s: scaling up to %d replicas (oldest request waited %.0f ms)", model.model_id,
                     len(current) + 1, waited_ms)
            self.arb.replicas.start(model, model.generation)
            return
        self._scale_down(model, now)

    def _scale_down(self, model: Model, now: float) -> None:
        keep_alive = model.config.keep_alive_s
        if keep_alive < 0 or model.queue or model.job is not None:
            return
        serving = model.serving()
        idle = [r for r in serving if r.work is None and not r.streams and now - r.last_used >= keep_alive]
        if not idle:
            return
        if len(serving) > max(1, model.config.min_replicas):
            replica = min(idle, key=lambda r: r.last_used)
            self.arb.lifecycle.retire(model, replica, f"idle for {now - replica.last_used:.1f} s", keep_streams=True)
        elif model.config.min_replicas == 0 and len(idle) == len(serving) == len(model.replicas):
            idle_s = now - max(r.last_used for r in serving)
            model.usage.idle_unloads += 1
            log.info("model %s: unloading after %.1f s idle (keep_alive_s=%g)", model.model_id, idle_s, keep_alive)
            self.arb.lifecycle.unload(model, f"idle for {idle_s:.1f} s (keep_alive_s={keep_alive:g})",
                                      lambda *_: None)
