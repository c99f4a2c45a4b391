"""The Supervisor: the typed facade the API calls from any thread.

It owns no lifecycle state: each call runs an operation on the arbiter thread and waits on a Future with a
deadline; reads (`snapshot`, `job`, `view`) take the latest snapshot the arbiter published.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec

from model_procs.sources import sweep_abandoned_generations
from supervisor import pipelines
from supervisor.arbiter.arbiter import Arbiter
from supervisor.catalog import pick_model
from supervisor.kinds import KINDS, funasr_version
from supervisor.config import Config, ConfigError
from wire.errors import SupervisorError, shown
from supervisor.arbiter.housekeeping import preload_order
from supervisor.jobs import LoadGroup
from supervisor.arbiter.lifecycle import job_error
from supervisor.arbiter.operations import resolve
from supervisor.registry import decode_model_config
from supervisor.snapshot import Snapshot
from supervisor.spawner import ForkserverSpawner, Spawner
from supervisor.work import WorkResult
from wire.views import (JobView, ModelView, PunctuationResult, SpeechSegments, StreamOpened, StreamText, Transcript,
                        TranscriptSegment, UnloadView)
from wire.audio import BYTES_PER_MS, SAMPLE_RATE

log = logging.getLogger(__name__)

TRANSCRIBERS = ("asr", "streaming_asr")  # /asr/transcribe: an offline model when one is configured
CHUNK_MS = 600
COMMAND_TIMEOUT_S = 30.0   # an operation itself returns at once; this only catches a wedged arbiter


class LoadTicket(msgspec.Struct, frozen=True):
    """What a load request started: its id, and the jobs to wait on (read only once they are done)."""

    load_id: str
    model_type: str
    completed: bool
    estimated_ms: int
    load_ids: dict[str, str] | None
    jobs: list[Any]


def check_pcm(pcm: bytes, allow_empty: bool = False) -> None:
    if not pcm and not allow_empty:
        raise SupervisorError("INVALID_REQUEST", "Empty audio", "send 16-bit little-endian mono 16 kHz PCM")
    if len(pcm) % 2:
        raise SupervisorError("INVALID_REQUEST", "Odd audio byte count",
                              f"{len(pcm)} bytes is not a whole number of 16-bit samples")


class Supervisor:
    def __init__(self, config: Config, cache_dir: Path, stop_grace_s: float = 2.0, log_format: str = "text",
                 spawner: Spawner | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.version = funasr_version()
        self.settings = config.server
        self._spawner = spawner or ForkserverSpawner()
        self.arbiter = Arbiter(config, self.cache_dir, self._spawner, stop_grace_s, log_format, self.version,
                               self.started_at)
        self.loop = self.arbiter.loop
        self.metrics = self.arbiter.metrics
        self._ops = self.arbiter.operations
        self._stop_grace_s = stop_grace_s
        self._started = False
        self._closed = False

    # -- life of the supervisor itself -------------------------------------------------------------
    def start(self) -> None:
        """Start the arbiter now and the forkserver in the background (it preloads torch+funasr: seconds)."""
        self._started = True
        self.arbiter.start()
        threading.Thread(target=self._boot, name="supervisor-boot", daemon=True).start()

    def _boot(self) -> None:
        log.info("forkserver: booting with torch and funasr preloaded")
        log.info("forkserver: ready in %.1f s", self._spawner.boot())
        for model_id in preload_order(self.arbiter.models):
            log.info("preload: loading %s", model_id)
            try:
                self.await_load(self.request_load(model_id, timeout_s=self.settings.load_timeout_s))
            except SupervisorError as exc:
                log.log(logging.ERROR if self.arbiter.models[model_id].config.required else logging.WARNING,
                        "preload: model %s failed: %s (%s)", model_id, exc.message, exc.details)

    def close(self) -> None:
        """Refuse new work, let requests in flight finish (up to drain_timeout_s), unload every model, stop
        the arbiter and the forkserver. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                self._wait(self._call(self._ops.close), self._unload_backstop_s())
        except SupervisorError as exc:
            log.error("supervisor: shutdown did not finish cleanly: %s", exc.message)
        finally:
            self.loop.stop()
            self._spawner.shutdown()
            sweep_abandoned_generations(str(self.cache_dir))  # a load cancelled mid-generation left its copy
        log.info("supervisor: closed")

    def is_alive(self) -> bool:
        return self.loop.is_alive()

    # -- reads: the published snapshot --------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return self.arbiter.snapshot

    def view(self, model_id: str) -> ModelView:
        return self.snapshot.models[model_id]

    def missing_required(self) -> list[str]:
        """Required models that are not loaded: what /readyz reports."""
        models = self.snapshot.models
        return [m for m, view in models.items() if view.required and view.status != "loaded"]

    def resolve(self, model_type: str, allow_all: bool = True) -> list[str]:
        return resolve(model_type, list(self.snapshot.models), allow_all)

    def job(self, load_id: str) -> JobView:
        view = self.snapshot.jobs.get(load_id)
        if view is None:
            raise SupervisorError("LOAD_NOT_FOUND", "Load not found",
                                  f"No load with id '{shown(load_id)}' is known (ids are kept for the last 512 loads)")
        if view.finished_at is None and view.started_at is not None:  # elapsed is live, the rest as published
            return msgspec.structs.replace(view, elapsed_ms=round((time.time() - view.started_at.timestamp())
                                                                  * 1000, 1))
        return view

    # -- lifecycle ------------------------------------------------------------------------------------
    def request_load(self, model_type: str, force_reload: bool = False, timeout_s: float = 300.0) -> LoadTicket:
        """Start (or join) the load of one model or of `all`; returns at once with what to wait on."""
        def start() -> LoadTicket:
            job = self._ops.load(model_type, force_reload, timeout_s)
            jobs = job.jobs if isinstance(job, LoadGroup) else [job]
            return LoadTicket(load_id=job.load_id, model_type=model_type, completed=job.done and not any(
                j.error_code for j in jobs), estimated_ms=max(
                    self.arbiter.models[j.model_id].estimated_load_ms() for j in jobs),
                load_ids={j.model_id: j.load_id for j in jobs} if isinstance(job, LoadGroup) else None, jobs=jobs)
        return self._call(start)

    def await_load(self, ticket: LoadTicket) -> None:
        """Block until every job of the ticket ends; raise the first error if one did not complete."""
        for job in ticket.jobs:
            self._wait(job.future, job.timeout_s + 30)
        for job in ticket.jobs:
            if job.error_code:
                raise job_error(job)

    def unload(self, model_type: str) -> UnloadView:
        """Stop the model's processes (drain, ask → SIGTERM → SIGKILL) and report what that returned."""
        return self._wait(self._call(lambda: self._ops.unload(model_type)), self._unload_backstop_s())

    # -- the registry -----------------------------------------------------------------------------------
    def register(self, name: str, config_json: str | bytes) -> bool:
        """Register (or replace a stopped) model from its JSON settings; True when it replaced one."""
        try:
            config = decode_model_config(name, config_json)
        except ConfigError as exc:
            raise SupervisorError("INVALID_REQUEST", "Bad model config", str(exc)) from None
        return self._call(lambda: self._ops.register(name, config))

    def forget(self, name: str) -> None:
        self._call(lambda: self._ops.forget(name))

    # -- which model a route uses ---------------------------------------------------------------------
    def model_for(self, kinds: tuple[str, ...], requested: str | None = None) -> str:
        """`requested` if it is a model of one of `kinds`, else the default model of the first kind that has one."""
        return pick_model({m: v.kind for m, v in self.snapshot.models.items()}, kinds, requested)

    def _streaming(self, model_id: str | None, kind: str | None) -> str:
        """A stream's model: of the route's `kind`; called without one, any streaming model named, or the
        streaming ASR's default."""
        if kind is None:
            view = self.snapshot.models.get(model_id or "")
            kind = view.kind if view is not None and KINDS[view.kind].streams else "streaming_asr"
        return self.model_for((kind,), model_id)

    # -- inference ------------------------------------------------------------------------------------
    def punctuate(self, text: str, model: str | None = None) -> PunctuationResult:
        model_id = self.model_for(("punctuation",), model)
        began = time.monotonic()
        result = self._work(lambda: self._ops.punctuate(model_id, text), pieces=1)
        return PunctuationResult(text=result.text, processing_ms=round((time.monotonic() - began) * 1000, 2),
                                 cold_start=result.cold_start, model_ms=round(result.compute_ms, 3))

    def open_stream(self, punctuate: bool, model_id: str | None = None, sequence_id: str | None = None,
                    kind: str | None = None) -> StreamOpened:
        model_id = self._streaming(model_id, kind)
        result = self._work(lambda: self._ops.open_stream(model_id, punctuate, sequence_id), pieces=1)
        stream = result.stream
        return StreamOpened(stream_id=stream.stream_id, sample_rate=SAMPLE_RATE, chunk_ms=CHUNK_MS,
                            expires_in_s=stream.expires_in_s, cold_start=result.cold_start, model=model_id)

    def feed(self, stream_id: str, pcm: bytes, is_final: bool = False, model_id: str | None = None,
             kind: str | None = None) -> StreamText:
        """Audio for a stream; its final text is punctuated when the stream was opened asking for it."""
        model_id = self._streaming(model_id, kind)
        self._refused_counted(model_id, lambda: check_pcm(pcm, allow_empty=is_final))
        began = time.monotonic()
        result = self._work(lambda: self._ops.feed(model_id, stream_id, pcm, is_final), pieces=self._pieces(pcm))
        return pipelines.stream_text(self, result, is_final, began)

    def feeding(self, feeds: list[tuple[str, bytes, bool, str]]) -> list[Future]:
        """Queue audio for several streams, `(stream_id, pcm, is_final, model_id)` each, in one hand-off to the
        arbiter, without waiting: each Future gets its WorkResult (a live session's step feeds its VAD and its
        online model together)."""
        for _, pcm, is_final, _ in feeds:
            check_pcm(pcm, allow_empty=is_final)
        return self._call(lambda: [self._ops.feed(model_id, stream_id, pcm, is_final)
                                   for stream_id, pcm, is_final, model_id in feeds])

    def feed_sequence(self, sequence_id: str, pcm: bytes, start: bool, end: bool, model_id: str | None = None,
                      punctuate: bool = False, kind: str | None = None) -> tuple[StreamText, bool]:
        """Triton's sequence batching on our streams: `start` opens a stream under the client's sequence id,
        each request feeds it, `end` finishes it. Also says whether the start was a cold start."""
        model_id = self._streaming(model_id, kind)
        cold_start = start and self.open_stream(punctuate, model_id, sequence_id, kind).cold_start
        stream_id = self._call(lambda: self._ops.sequence_stream(model_id, sequence_id))
        return self.feed(stream_id, pcm, is_final=end, model_id=model_id, kind=kind), cold_start

    def abort(self, stream_id: str, model_id: str | None = None, kind: str | None = None) -> None:
        model_id = self._streaming(model_id, kind)
        self._call(lambda: self._ops.abort(model_id, stream_id))

    def detect_speech(self, pcm: bytes, model: str | None = None) -> SpeechSegments:
        """The VAD's speech segments of a whole recording."""
        model_id = self.model_for(("vad",), model)
        self._refused_counted(model_id, lambda: check_pcm(pcm))
        began = time.monotonic()
        result = self._work(lambda: self._ops.recording(model_id, pcm), pieces=self._pieces(pcm))
        processing_ms, audio_ms = (time.monotonic() - began) * 1000, len(pcm) / BYTES_PER_MS
        return SpeechSegments(segments=result.segments, audio_ms=round(audio_ms, 1),
                              processing_ms=round(processing_ms, 2), rtf=round(processing_ms / audio_ms, 4),
                              cold_start=result.cold_start, model_ms=round(result.compute_ms, 3))

    def recognise(self, model_id: str, pcm: bytes, hotwords: str = "") -> Future:
        """Queue one recording (or segment) on a speech model; the Future gets its WorkResult."""
        return self._call(lambda: self._ops.recording(model_id, pcm, hotwords))

    def transcribe(self, pcm: bytes, punctuate: bool, vad: bool | None = None, model: str | None = None,
                   hotwords: str = "") -> Transcript:
        """A whole recording, on an `asr` model when one is configured, else the streaming model; split on the
        VAD's speech segments when `vad` is true, or when it is None and the VAD is loaded."""
        model_id = self.model_for(TRANSCRIBERS, model)
        self._refused_counted(model_id, lambda: check_pcm(pcm))
        return pipelines.transcribe(self, model_id, pcm, punctuate, vad, hotwords)

    def transcribe_as_heard(self, pcm: bytes, model: str | None = None,
                            hotwords: str = "") -> Iterator[TranscriptSegment]:
        """A recording's segments (the VAD's, when a VAD is configured; else the whole), punctuated, each as soon
        as it is transcribed. The VAD runs before this returns, so its errors are raised here."""
        model_id = self.model_for(TRANSCRIBERS, model)
        self._refused_counted(model_id, lambda: check_pcm(pcm))
        speech = self.detect_speech(pcm) if self.has_model("vad") else None
        return pipelines.segments_as_heard(self, model_id, pcm, speech, True, hotwords)

    def has_model(self, kind: str) -> bool:
        return any(view.kind == kind for view in self.snapshot.models.values())

    def live_session(self, model_ids: list[str], opened: bool) -> None:
        """A WebSocket session began (or ended) using these models: /model/info counts it."""
        self._call(lambda: self._ops.live_sessions(model_ids, 1 if opened else -1))

    def record_refused(self, model_id: str) -> None:
        self._call(lambda: self._ops.record_refused(model_id))

    def window(self, model_id: str) -> int:
        """How many segments of one recording may queue at once: enough for every replica, and one more."""
        return self.snapshot.models[model_id].details.config.max_replicas + 1

    # -- waiting ----------------------------------------------------------------------------------------
    def _refused_counted(self, model_id: str, check: Callable[[], None]) -> None:
        try:
            check()
        except SupervisorError:
            self.record_refused(model_id)
            raise

    def _pieces(self, pcm: bytes) -> int:
        return len(pcm) // (self.settings.transcribe_piece_ms * 32) + 1

    def _work(self, start: Callable[[], Future], pieces: int) -> WorkResult:
        """Queue work on the arbiter and wait for it. The arbiter bounds every wait (load timeout, queue and
        piece deadlines); this backstop only guards against a wedged arbiter."""
        return self._wait(self._call(start), self._backstop_s(pieces))

    def backstop_s(self, pcm: bytes) -> float:
        """How long to wait for the answer to this much audio before blaming the arbiter."""
        return self._backstop_s(self._pieces(pcm))

    def _backstop_s(self, pieces: int) -> float:
        settings = self.settings
        return settings.load_timeout_s + (2 * pieces + 2) * settings.request_timeout_s + 60

    def _unload_backstop_s(self) -> float:
        return self.settings.drain_timeout_s + 3 * self._stop_grace_s + 30

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self._wait(self.loop.call(fn), COMMAND_TIMEOUT_S)

    def wait(self, future: Future, timeout_s: float) -> Any:
        return self._wait(future, timeout_s)

    def _wait(self, future: Future, timeout_s: float) -> Any:
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            log.error("supervisor: no answer within %.0f s; the arbiter is at:\n%s", timeout_s,
                      self.loop.where())
            raise SupervisorError("INTERNAL", "The supervisor did not answer in time",
                                  "the server logged it; please report it") from None
