"""What callers ask of the arbiter. Each method runs on the arbiter thread (the facade `call`s it there) and
returns at once: a job, or a Future the caller waits on with its deadline."""

from __future__ import annotations

import functools
import itertools
import logging
import time
from concurrent.futures import Future

from supervisor.arbiter.board import Board
from supervisor.arbiter.dispatch import Dispatcher
from supervisor.arbiter.lifecycle import Lifecycle
from supervisor.catalog import ALL, catalog_entry, resolve
from supervisor.config import ServerSettings
from supervisor.jobs import LoadGroup, LoadJob, job_error
from supervisor.orders import (Abort, Feed, LiveSessions, OpenStream, Order, Punctuation, Recording, Refused,
                               SequenceStream)
from supervisor.registry import Registry
from supervisor.replica import Model, Replica
from supervisor.states import ModelStatus
from supervisor.streams import Stream, StreamRegistry, stream_lost
from supervisor.work import AudioWork, OpenStreamWork, PunctuateWork, Work
from wire.errors import ErrorCode, SupervisorError, model_not_found, shown
from wire.model_config import ModelConfig
from wire.views import UnloadView
from wire.audio import BYTES_PER_MS

log = logging.getLogger(__name__)

STOPPED = (ModelStatus.UNLOADED, ModelStatus.FAILED)


class Operations:
    def __init__(self, models: dict[str, Model], lifecycle: Lifecycle, dispatch: Dispatcher,
                 replicas: dict[bytes, Replica], streams: StreamRegistry, registry: Registry, board: Board,
                 settings: ServerSettings) -> None:
        self.models, self.lifecycle, self.dispatch, self.replicas = models, lifecycle, dispatch, replicas
        self.streams, self.registry, self.board, self.settings = streams, registry, board, settings
        self._transcriptions = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------------
    def load(self, model_type: str, force_reload: bool, timeout_s: float) -> LoadJob | LoadGroup:
        """Start or join; a single model refused at once (memory) raises, `all` reports it in its group."""
        jobs = [self.lifecycle.load(self.models[m], force_reload, timeout_s)
                for m in resolve(model_type, list(self.models))]
        if model_type != ALL:
            if jobs[0].done and jobs[0].error_code:
                raise job_error(jobs[0])
            return jobs[0]
        group = LoadGroup(jobs)
        self.board.remember(group)
        return group

    def unload(self, model_type: str) -> Future:
        """The Future gets the UnloadView once every process of the model(s) is gone."""
        began, future = time.monotonic(), Future[UnloadView]()
        model_ids = resolve(model_type, list(self.models))
        outcomes: dict[str, tuple[float, bool]] = {}

        def one_done(model_id: str, freed: float, was_loaded: bool) -> None:
            outcomes[model_id] = (freed, was_loaded)
            if len(outcomes) == len(model_ids):
                remaining = [m for m, model in self.models.items() if model.status is ModelStatus.LOADED]
                self.board.settle(future, UnloadView(
                    model_type=model_type, memory_freed_mb=round(sum(f for f, _ in outcomes.values()), 1),
                    unload_time_ms=round((time.monotonic() - began) * 1000, 1), models_remaining=remaining,
                    was_loaded=any(w for _, w in outcomes.values())))
        for model_id in model_ids:
            self.lifecycle.unload(self.models[model_id], "unload requested", functools.partial(one_done, model_id))
        return future

    def close(self) -> Future:
        """Refuse new work, answer what is queued, drain what runs, unload everything."""
        self.board.closing = True
        self.board.changed()
        for model in self.models.values():
            self.dispatch.fail_queue(model, lambda: SupervisorError(
                ErrorCode.MODEL_NOT_READY, "Server is shutting down", "retry against another instance",
                retry_after_s=5))
        return self.unload(ALL)

    # -- the registry -------------------------------------------------------------------------------
    def register(self, name: str, config: ModelConfig) -> bool:
        """Add a model, or replace one that is stopped; kept on disk for the next start. True: it replaced one."""
        existing = self.models.get(name)
        if existing is not None and (existing.replicas or existing.status not in STOPPED or existing.busy()):
            raise SupervisorError(ErrorCode.CONFLICT, f"Model {name} is {existing.status.value}",
                                  "unload it before registering another model under its name")
        self._persist(lambda: self.registry.put(name, config))
        self.models[name] = Model(catalog_entry(name, config), config)
        log.info("model %s: registered (kind %s, source %s)%s", name, config.kind, config.source,
                 ", replacing the one before" if existing else "")
        self.board.changed()
        return existing is not None

    def forget(self, name: str) -> None:
        """Remove a registered model that is stopped, here and on disk."""
        model = self.model(name)
        if name not in self.registry:
            raise SupervisorError(ErrorCode.CONFLICT, f"Model {name} comes from the server's config",
                                  "only models registered at run time can be forgotten; remove it from [models]")
        if model.replicas or model.status not in STOPPED or model.busy():
            raise SupervisorError(ErrorCode.CONFLICT, f"Model {name} is {model.status.value}", "unload it first")
        self._persist(lambda: self.registry.remove(name))
        del self.models[name]
        log.info("model %s: forgotten", name)
        self.board.changed()

    @staticmethod
    def _persist(write) -> None:
        try:
            write()
        except OSError as exc:
            raise SupervisorError(ErrorCode.INTERNAL, "The model registry could not be written",
                                  f"{exc.filename or 'the cache directory'}: {exc.strerror}; free space there or "
                                  "make it writable") from None

    # -- inference -----------------------------------------------------------------------------------
    def model(self, model_id: str):
        """A model by name, on the arbiter thread (it may have been forgotten since the caller looked)."""
        model = self.models.get(model_id)
        if model is None:
            raise model_not_found(model_id, list(self.models))
        return model

    def start(self, order: Order) -> Future | str | None:
        """Start what an order asks: work that queues gives its Future; the rest is done at once."""
        match order:
            case Punctuation(model_id, text):
                return self.punctuate(model_id, text)
            case Recording(model_id, pcm, hotwords):
                return self.recording(model_id, pcm, hotwords)
            case OpenStream(model_id, punctuate, sequence_id):
                return self.open_stream(model_id, punctuate, sequence_id)
            case Feed(model_id, stream_id, pcm, is_final):
                return self.feed(model_id, stream_id, pcm, is_final)
            case SequenceStream(model_id, sequence_id):
                return self.sequence_stream(model_id, sequence_id)
            case Abort(model_id, stream_id):
                self.abort(model_id, stream_id)
            case LiveSessions(model_ids, change):
                self.live_sessions(model_ids, change)
            case Refused(model_id):
                self.record_refused(model_id)
            case _:
                raise TypeError(f"not an order: {order!r}")
        return None

    def _queue(self, model_id: str, work: Work) -> Future:
        model = self.model(model_id)
        try:
            self.dispatch.check_room(model)
            if work.pinned is None and not model.serving():
                self.lifecycle.cold_start(model, work)
            self.dispatch.enqueue(model, work)
        except SupervisorError as exc:
            self.dispatch.finish(model, work, exc)
        return work.future

    def punctuate(self, model_id: str, text: str) -> Future:
        return self._queue(model_id, PunctuateWork(model_id, self.settings.request_timeout_s, text))

    def open_stream(self, model_id: str, punctuate: bool, sequence_id: str | None = None) -> Future:
        """A new stream; under a client's sequence id, one already open under it is aborted (a restart)."""
        previous = self.streams.restart_sequence(model_id, sequence_id) if sequence_id is not None else None
        if previous is not None:
            log.info("%s: sequence %s restarted; its previous stream %s is aborted", model_id, shown(sequence_id or ""),
                     previous)
            self.abort(model_id, previous)
        stream = Stream(model_id, punctuate, self.settings.stream_expiry_s, sequence_id)
        return self._queue(model_id, OpenStreamWork(model_id, self.settings.request_timeout_s, stream))

    def feed(self, model_id: str, stream_id: str, pcm: bytes, is_final: bool) -> Future:
        stream = self.streams.get(stream_id, self.model(model_id).model_id)
        replica = self.replicas.get(stream.identity or b"")
        if replica is None or replica.stopping:
            self.streams.lose(stream_id, "its model process was stopped since the stream opened")
            raise stream_lost(stream_id, "its model process was stopped since the stream opened")
        limit_bytes = int(self.settings.max_stream_s * 1000 * BYTES_PER_MS)
        if stream.audio_bytes + len(pcm) > limit_bytes:
            raise SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Stream too long",
                                  f"a stream takes at most max_stream_s={self.settings.max_stream_s:g} s of audio "
                                  "(its per-chunk cost grows with its length); finish this one and open a new one",
                                  stream_id=stream_id)
        stream.audio_bytes += len(pcm)
        work = self._audio(model_id, stream.stream_id, pcm, is_final)
        work.stream, work.pinned = stream, stream.identity
        stream.pending += 1  # before queueing: finish() undoes it whether the work runs or is refused
        return self._queue(model_id, work)

    def sequence_stream(self, model_id: str, sequence_id: str) -> str:
        return self.streams.sequence_stream(model_id, sequence_id)

    def recording(self, model_id: str, pcm: bytes, hotwords: str = "") -> Future:
        """A whole recording on a private stream id: transcribed (ASR) or split into speech segments (VAD)."""
        work = self._audio(model_id, f"rec_{next(self._transcriptions)}", pcm, True)
        work.hotwords = " ".join(filter(None, (self.model(model_id).config.hotwords, hotwords)))
        return self._queue(model_id, work)

    def _audio(self, model_id: str, stream_id: str, pcm: bytes, is_final: bool) -> AudioWork:
        piece_ms = self.model(model_id).entry.kind.audio_piece_ms or self.settings.transcribe_piece_ms
        return AudioWork(model_id, self.settings.request_timeout_s, stream_id, pcm, is_final,
                         piece_ms * BYTES_PER_MS)

    def abort(self, model_id: str, stream_id: str) -> None:
        stream = self.streams.get(stream_id, model_id)
        self.streams.remove(stream_id)
        self.dispatch.drop_stream(stream.identity, stream_id)
        self.board.changed()

    def live_sessions(self, model_ids: list[str], change: int) -> None:
        for model_id in model_ids:
            self.model(model_id).usage.live_sessions += change
        self.board.changed()

    def record_refused(self, model_id: str) -> None:
        self.model(model_id).usage.record("invalid", 0.0)
        self.board.changed()
