"""A hand-written fake of the Supervisor facade (`supervisor.core.Supervisor`) for the HTTP layer's tests.

A test double: those tests are about what `api/` owns (parsing, the error envelope, status codes, serializing
the facade's answers), not about lifecycle. Models load at once; a load asked for asynchronously stays
`loading` until the test calls `finish_loads()`; `refuse_with` makes the next facade call raise that error.
Views and jobs are built with the real snapshot code, so the JSON is the one the real facade produces.

Orders (`submit`) are answered at once, as a model would shape them: punctuation appends "。", a recording on a VAD
is one speech segment from 100 ms to its end, on an ASR model one token per 100 ms of audio; a stream feed
answers `s<ms heard>`, and a VAD stream hears speech from its start to its final feed. `orders` keeps what was
submitted, so a flow's test can say what reached the facade.
"""

from __future__ import annotations

import time
from concurrent.futures import Future

from supervisor.catalog import catalog_entry, pick_model
from supervisor.config import completed, load_config
from supervisor.core import LoadTicket
from supervisor.orders import (Abort, Feed, LiveSessions, OpenStream, Order, Punctuation, Recording, Refused,
                               SequenceStream)
from supervisor.streams import Stream, stream_not_found
from supervisor.work import WorkResult
from wire.audio import BYTES_PER_MS
from supervisor.jobs import JobStatus, LoadJob
from supervisor.metrics import SupervisorMetrics
from supervisor.replica import Model
from supervisor.snapshot import Snapshot, job_view, model_view, system_info
from supervisor.states import ModelStatus
from wire.errors import SupervisorError, model_not_found
from wire.views import CacheInfo, JobView, SystemInfo, UnloadView


class FakeSupervisor:
    def __init__(self) -> None:
        config = load_config("demo")
        self.settings = config.server
        self.started_at, self.version = time.time(), "fake"
        self.models = {name: Model(catalog_entry(name, completed(name, c)), completed(name, c))
                       for name, c in config.models.items()}
        self.jobs: dict[str, LoadJob] = {}
        self.calls: list[str] = []
        self.refuse_with: SupervisorError | None = None
        self.alive = True
        self.orders: list[Order] = []
        self.streams: dict[str, Stream] = {}
        self.sequences: dict[str, str] = {}
        self.live_sessions = 0
        self.refused = 0
        self.metrics = SupervisorMetrics(lambda: self.snapshot)

    # -- reads ----------------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return Snapshot(models={m: model_view(model, self.version, 0) for m, model in self.models.items()},
                        jobs={i: job_view(job) for i, job in self.jobs.items()},
                        cache=CacheInfo(cache_enabled=True, cache_directory="/fake", cache_size_mb=0.0,
                                        cache_hit_rate=0.0), closing=False, loop_alive_at=time.monotonic())

    def view(self, model_id: str):
        return self.snapshot.models[model_id]

    def is_alive(self) -> bool:
        return self.alive

    def missing_required(self) -> list[str]:
        return [m for m, model in self.models.items() if model.config.required and model.status is not
                ModelStatus.LOADED]

    def resolve(self, model_type: str, allow_all: bool = True) -> list[str]:
        if model_type == "all" and allow_all:
            return list(self.models)
        if model_type not in self.models:
            raise model_not_found(model_type, list(self.models))
        return [model_type]

    def has_model(self, kind: str) -> bool:
        return any(model.config.kind == kind for model in self.models.values())

    def model_for(self, kinds: tuple[str, ...], requested: str | None = None) -> str:
        return pick_model({m: model.config.kind for m, model in self.models.items()}, kinds, requested)

    def job(self, load_id: str) -> JobView:
        if load_id not in self.jobs:
            raise SupervisorError("LOAD_NOT_FOUND", "Load not found", f"No load with id '{load_id}' is known")
        return job_view(self.jobs[load_id])

    # -- calls ----------------------------------------------------------------------------------------
    def _called(self, name: str) -> None:
        self.calls.append(name)
        refusal, self.refuse_with = self.refuse_with, None
        if refusal is not None:
            raise refusal

    def request_load(self, model_type: str, force_reload: bool = False, timeout_s: float = 300.0) -> LoadTicket:
        self._called("request_load")
        (model_id,) = self.resolve(model_type, allow_all=False)
        job = LoadJob(model_id, timeout_s, force_reload)
        job.start(1)
        self.jobs[job.load_id] = job
        self.models[model_id].status = ModelStatus.LOADING
        return LoadTicket(load_id=job.load_id, model_type=model_type, completed=False, estimated_ms=1000,
                          load_ids=None, jobs=[job])

    def await_load(self, ticket: LoadTicket) -> None:
        self.finish_loads()

    def finish_loads(self) -> None:
        for job in self.jobs.values():
            if not job.done:
                job.finish(JobStatus.COMPLETED)
                model = self.models[job.model_id]
                model.status, model.load_time_ms = ModelStatus.LOADED, 12.5

    def unload(self, model_type: str) -> UnloadView:
        self._called("unload")
        model_ids = self.resolve(model_type)
        was_loaded = any(self.models[m].status is ModelStatus.LOADED for m in model_ids)
        for model_id in model_ids:
            self.models[model_id].status = ModelStatus.UNLOADED
        return UnloadView(model_type=model_type, memory_freed_mb=42.0 if was_loaded else 0.0, unload_time_ms=3.0,
                          models_remaining=[m for m, model in self.models.items()
                                            if model.status is ModelStatus.LOADED], was_loaded=was_loaded)

    def register(self, name: str, config_json: str | bytes) -> bool:
        """Refused: the registry's rules are the real one's, tested where they live."""
        self._called("register")
        raise SupervisorError("CONFLICT", "Not on the fake", "the fake facade keeps its demo models")

    def forget(self, name: str) -> None:
        self._called("forget")
        raise SupervisorError("CONFLICT", "Not on the fake", "the fake facade keeps its demo models")

    def system_info(self) -> SystemInfo:
        return system_info(self.started_at)   # the machine's own: the real facade's answer

    def nodes(self) -> dict[str, SystemInfo]:
        return {}

    def where(self) -> str:
        return "(fake: no arbiter)"

    def submit(self, *orders: Order) -> list[Future]:
        """Each order answered at once (or with `refuse_with`, the first one refused)."""
        self.calls.append("submit")
        answers = []
        for order in orders:
            self.orders.append(order)
            answer: Future = Future()
            refusal, self.refuse_with = self.refuse_with, None
            try:
                if refusal is not None:
                    raise refusal
                answer.set_result(self.answer(order))
            except SupervisorError as exc:
                answer.set_exception(exc)
            answers.append(answer)
        return answers

    def answer(self, order: Order) -> WorkResult | str | None:
        match order:
            case Punctuation(model_id, text):
                self.resolve(model_id, allow_all=False)
                return WorkResult(text=text + "。", partial_text="", compute_ms=0.5, cold_start=False)
            case Recording(model_id, pcm) if self.models[model_id].config.kind == "vad":
                return WorkResult(text="", partial_text="", compute_ms=0.5, cold_start=False,
                                  segments=[(100, len(pcm) // BYTES_PER_MS)] if len(pcm) > 100 * BYTES_PER_MS else [])
            case Recording(model_id, pcm):
                words = [(f"w{i}", i * 100, i * 100 + 100) for i in range(len(pcm) // (100 * BYTES_PER_MS))]
                return WorkResult(text="".join(w for w, _, _ in words), partial_text="", compute_ms=1.0,
                                  cold_start=False, words=words if self.models[model_id].config.kind == "asr" else [])
            case OpenStream(model_id, punctuate, sequence_id):
                stream = Stream(model_id, punctuate, self.settings.stream_expiry_s, sequence_id)
                self.streams[stream.stream_id] = stream
                if sequence_id is not None:
                    self.sequences[sequence_id] = stream.stream_id
                return WorkResult(text="", partial_text="", compute_ms=0.0, cold_start=False, stream=stream)
            case Feed(stream_id=stream_id, pcm=pcm, is_final=is_final):
                stream = self.stream(stream_id)
                stream.audio_bytes += len(pcm)
                if is_final:
                    del self.streams[stream_id]
                heard_ms = stream.audio_bytes // BYTES_PER_MS
                if self.models[stream.model_id].config.kind == "vad":  # speech from the start, closed at the end
                    return WorkResult(text="", partial_text="", compute_ms=0.5, cold_start=False, stream=stream,
                                      segments=[(0, heard_ms)] if is_final else [], speech_from_ms=-1 if is_final
                                      else 0)
                return WorkResult(text=f"s{heard_ms}" if pcm else "", partial_text=f"s{heard_ms}", compute_ms=0.5,
                                  cold_start=False, stream=stream)
            case SequenceStream(sequence_id=sequence_id):
                return self.sequences[sequence_id]
            case Abort(stream_id=stream_id):
                self.stream(stream_id)
                del self.streams[stream_id]
                return None
            case LiveSessions(change=change):
                self.live_sessions += change
                return None
            case Refused():
                self.refused += 1
                return None
        raise TypeError(order)

    def stream(self, stream_id: str) -> Stream:
        if stream_id not in self.streams:
            raise stream_not_found(stream_id)
        return self.streams[stream_id]
