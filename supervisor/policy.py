"""Serverless behaviour: preload at start-up, unload idle models (scale to zero), expire idle streams."""

from __future__ import annotations

import logging
import threading

from supervisor.errors import SupervisorError
from supervisor.states import ModelStatus

log = logging.getLogger(__name__)

TICK_S = 0.25


def preload_order(slots: dict) -> list[str]:
    """The reference's ProductionModelManager order: required first, then by priority, highest first."""
    chosen = [m for m, slot in slots.items() if slot.config.preload]
    return sorted(chosen, key=lambda m: (not slots[m].config.required, -slots[m].config.priority))


def preload(supervisor) -> None:
    """Load the preload models one by one; a failure is logged and shown in /model/info, and serving goes on."""
    for model_id in preload_order(supervisor.slots):
        slot = supervisor.slots[model_id]
        log.info("preload: loading %s (required=%s, priority=%d)", model_id, slot.config.required,
                 slot.config.priority)
        try:
            supervisor.await_load(supervisor.request_load(model_id, timeout_s=supervisor.settings.load_timeout_s))
        except SupervisorError as exc:
            level = logging.ERROR if slot.config.required else logging.WARNING
            log.log(level, "preload: %s model %s failed: %s (%s)",
                    "required" if slot.config.required else "optional", model_id, exc.message, exc.details)


class Housekeeper:
    """A thread that, every quarter second, expires idle streams and unloads models idle past keep_alive_s."""

    def __init__(self, supervisor) -> None:
        self._sup = supervisor
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread = threading.Thread(target=self._run, name="housekeeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        self._thread.join(timeout=5)

    def nudge(self) -> None:
        """Check now rather than at the next tick (keep_alive_s = 0 unloads right after a request)."""
        self._nudge.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._nudge.wait(TICK_S)
            self._nudge.clear()
            try:
                self._sweep()
            except Exception:
                log.exception("housekeeping failed")

    def _sweep(self) -> None:
        self._sup.watchdog()
        expired = self._sup.inference.expire_idle_streams()
        if expired:
            log.info("streams: %d expired after being idle", expired)
        for slot in self._sup.slots.values():
            keep_alive = slot.config.keep_alive_s
            if keep_alive >= 0 and slot.status is ModelStatus.LOADED and slot.usage.idle_for() >= keep_alive:
                self._sup.unload_if_idle(slot)
