"""What every resource is built from, made once per app (and once per WebSocket server): the facade, the flows on
it, the thread gate and the request limits, computed from the settings in one place."""

from __future__ import annotations

import msgspec

from api.common.gate import ThreadGate
from api.common.media import MAX_JSON_BYTES
from flows.ports import SupervisorAPI
from flows.service import Flows
from supervisor.config import ServerSettings


class Limits(msgspec.Struct, frozen=True):
    audio_bytes: int       # a request's audio (raw, a file, a multipart part, a tensor)
    audio_s: float         # decoded audio
    decodes: int           # files decoding at once
    text_bytes: int
    json_bytes: int        # a JSON body that is not itself audio or text
    frame_bytes: int       # one WebSocket message

    @classmethod
    def of(cls, settings: ServerSettings) -> Limits:
        return cls(audio_bytes=int(settings.max_audio_mb * 1024 * 1024), audio_s=settings.max_audio_s,
                   decodes=settings.max_decodes, text_bytes=int(settings.max_text_kb * 1024),
                   json_bytes=MAX_JSON_BYTES, frame_bytes=int(settings.ws_max_frame_mb * 1024 * 1024))


class Deps:
    def __init__(self, supervisor: SupervisorAPI, gate: ThreadGate | None = None) -> None:
        self.supervisor, self.settings = supervisor, supervisor.settings
        self.flows = Flows(supervisor)
        self.gate = gate or ThreadGate(self.settings.http_threads - self.settings.control_threads)
        self.limits = Limits.of(self.settings)
        self.adapters: list = []        # the app's route table, once built (the OpenAPI document reads it)


class ModelWork:
    """A resource whose calls hold their thread while a model works: admitted through the thread gate."""

    def __init__(self, deps: Deps) -> None:
        self.supervisor, self.flows, self.gate, self.limits = deps.supervisor, deps.flows, deps.gate, deps.limits
