"""Using the models: punctuation, live streams, whole-file transcription, with cold starts and accounting.

Every model call goes through `lease`: it loads the model on demand (when `autoload` allows), marks the
request in flight so idle unloading leaves the model alone, applies the request deadline, and records the
outcome and latency.
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Callable, Iterator

from model_procs.protocol import Punctuate, Reply, RequestFailed, StreamDrop, StreamFeed, Transcribe
from supervisor.errors import SupervisorError
from supervisor.io_loop import PeerGone
from supervisor.states import ModelStatus
from supervisor.streams import Stream, StreamRegistry, stream_not_found
from supervisor.views import PunctuationResult, StreamOpened, StreamText, Transcript
from supervisor.workers import WorkerHandle

SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2
CHUNK_MS = 600
OUTCOMES = {"INFERENCE_TIMEOUT": "timeout", "MODEL_CRASHED": "crashed", "STREAM_LOST": "lost",
            "INVALID_REQUEST": "invalid",
            "MODEL_NOT_READY": "unavailable", "LOAD_FAILED": "unavailable", "LOAD_TIMEOUT": "unavailable"}


class Lease:
    def __init__(self, worker: WorkerHandle, cold_start: bool) -> None:
        self.worker = worker
        self.cold_start = cold_start


class Inference:
    def __init__(self, supervisor) -> None:
        self.sup = supervisor
        self.streams = StreamRegistry()

    # -- the one path to a model ------------------------------------------------------------------
    @contextmanager
    def lease(self, model_id: str) -> Iterator[Lease]:
        slot = self.sup.slots[model_id]
        began, outcome = time.monotonic(), "ok"
        try:
            lease = self._acquire(model_id)
        except SupervisorError as exc:
            slot.usage.record(OUTCOMES.get(exc.code, "error"), (time.monotonic() - began) * 1000)
            raise
        try:
            yield lease
        except SupervisorError as exc:
            outcome = OUTCOMES.get(exc.code, "error")
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            elapsed = time.monotonic() - began
            slot.usage.end(outcome, elapsed * 1000)
            self.sup.metrics.request_duration.labels(model_id).observe(elapsed)
            self.sup.after_request(slot)

    @contextmanager
    def rejected_counted(self, model_id: str) -> Iterator[None]:
        """A request refused before it reaches the model still counts against the model's success rate."""
        try:
            yield
        except SupervisorError:
            self.sup.slots[model_id].usage.record("invalid", 0.0)
            raise

    def _acquire(self, model_id: str) -> Lease:
        slot = self.sup.slots[model_id]
        if self.sup.closing:
            raise SupervisorError("MODEL_NOT_READY", "Server is shutting down", "retry against another instance",
                                  model_type=model_id, retry_after_s=5)
        with slot.lock:
            if slot.status is ModelStatus.LOADED:
                slot.usage.begin()
                return Lease(slot.worker, cold_start=False)
            if not slot.config.autoload:
                raise SupervisorError("MODEL_NOT_READY", f"Model {model_id} is not loaded",
                                      f"load it first (POST /model/load), or set autoload for {model_id}",
                                      model_type=model_id, retry_after_s=max(1, self.sup.estimated_load_ms(model_id) // 1000))
        self.sup.await_load(self.sup.request_load(model_id, timeout_s=self.sup.settings.load_timeout_s))
        with slot.lock:
            if slot.status is not ModelStatus.LOADED:
                raise SupervisorError("MODEL_NOT_READY", f"Model {model_id} was unloaded as it became ready",
                                      "retry the request", model_type=model_id, retry_after_s=1)
            slot.usage.begin()
            slot.usage.cold_starts += 1
            return Lease(slot.worker, cold_start=True)

    def call(self, worker: WorkerHandle, make: Callable[[int], object]) -> Reply:
        """Send one request and wait for its reply within the request deadline."""
        loop = self.sup.loop
        request_id = loop.new_request_id()
        future = loop.request(worker.identity, make(request_id))
        timeout = self.sup.settings.request_timeout_s
        try:
            reply = future.result(timeout=timeout)
        except FutureTimeout:
            loop.forget(request_id)
            worker.kill(f"stuck on a request for more than request_timeout_s={timeout:g} s")  # it is restarted
            raise SupervisorError("INFERENCE_TIMEOUT", f"Model {worker.model_id} did not answer within {timeout:g} s",
                                  "its process was stuck and is being restarted; retry shortly, or raise "
                                  "[server] request_timeout_s for very long inputs") from None
        except PeerGone as exc:
            raise SupervisorError("MODEL_CRASHED", f"Model {worker.model_id} process went away: {exc}",
                                  "retry: a required model is restarted; see /model/info last_error") from None
        if isinstance(reply, RequestFailed):
            raise SupervisorError("INTERNAL", f"Model {worker.model_id} could not process the request",
                                  reply.message)
        return reply

    # -- punctuation -------------------------------------------------------------------------------
    def punctuate(self, text: str) -> PunctuationResult:
        began = time.monotonic()
        with self.lease("punctuation") as lease:
            reply = self.call(lease.worker, lambda rid: Punctuate(request_id=rid, text=text))
        return PunctuationResult(text=reply.text, processing_ms=round((time.monotonic() - began) * 1000, 2),
                                 cold_start=lease.cold_start, model_ms=round(reply.compute_ms, 3))

    # -- streams -----------------------------------------------------------------------------------
    def open_stream(self, punctuate: bool) -> StreamOpened:
        with self.lease("streaming_asr") as lease:
            stream = Stream("streaming_asr", lease.worker.identity, punctuate, self.sup.settings.stream_expiry_s)
            self.streams.add(stream)
        return StreamOpened(stream_id=stream.stream_id, sample_rate=SAMPLE_RATE, chunk_ms=CHUNK_MS,
                            expires_in_s=stream.expires_in_s, cold_start=lease.cold_start)

    def feed(self, stream_id: str, pcm: bytes, is_final: bool = False) -> StreamText:
        with self.rejected_counted("streaming_asr"):
            stream = self.streams.get(stream_id)
        with stream.lock:
            if stream.ended:
                raise stream_not_found(stream_id)
            began = time.monotonic()
            reply = self._stream_call(stream, pcm, is_final)
            stream.touch()
            if is_final:
                stream.ended = True
                self.streams.remove(stream_id)
        punctuated = self.punctuate(reply.partial_text) if is_final and stream.punctuate else None
        return StreamText(text=reply.partial_text if is_final else reply.text, partial_text=reply.partial_text,
                          punctuated_text=punctuated.text if punctuated else None,
                          processing_ms=round((time.monotonic() - began) * 1000, 2),
                          model_ms=round(reply.compute_ms + (punctuated.model_ms if punctuated else 0), 3))

    def _stream_call(self, stream: Stream, pcm: bytes, is_final: bool) -> Reply:
        with self.lease(stream.model_id) as lease:
            check_pcm(pcm, allow_empty=is_final)
            if lease.worker.identity != stream.identity:
                self.streams.remove(stream.stream_id)
                raise stream_lost(stream.stream_id, "the model was unloaded or restarted since the stream opened")
            try:
                return self.call(lease.worker, lambda rid: StreamFeed(request_id=rid, stream_id=stream.stream_id,
                                                                      pcm=pcm, is_final=is_final))
            except SupervisorError as exc:
                if exc.code == "MODEL_CRASHED":
                    self.streams.remove(stream.stream_id)
                    raise stream_lost(stream.stream_id, exc.message) from None
                raise

    def abort(self, stream_id: str) -> None:
        stream = self.streams.get(stream_id)
        self.streams.remove(stream_id)
        self.drop_in_worker(stream)

    def drop_in_worker(self, stream: Stream) -> None:
        """Free the stream's cache in its process, if that process still exists (fire and forget)."""
        worker = self.sup.slots[stream.model_id].worker
        if worker is not None and worker.identity == stream.identity:
            self.sup.loop.request(worker.identity, StreamDrop(request_id=self.sup.loop.new_request_id(),
                                                              stream_id=stream.stream_id))

    def expire_idle_streams(self) -> int:
        expired = self.streams.take_expired()
        for stream in expired:
            self.drop_in_worker(stream)
        return len(expired)

    # -- whole files -------------------------------------------------------------------------------
    def transcribe(self, pcm: bytes, punctuate: bool) -> Transcript:
        with self.rejected_counted("streaming_asr"):
            check_pcm(pcm)
        began = time.monotonic()
        with self.lease("streaming_asr") as lease:
            reply = self.call(lease.worker, lambda rid: Transcribe(request_id=rid, pcm=pcm))
        punctuated = self.punctuate(reply.text) if punctuate else None
        processing_ms = (time.monotonic() - began) * 1000
        audio_ms = len(pcm) / BYTES_PER_SECOND * 1000
        return Transcript(text=reply.text, punctuated_text=punctuated.text if punctuated else None,
                          audio_ms=round(audio_ms, 1), processing_ms=round(processing_ms, 2),
                          rtf=round(processing_ms / audio_ms, 4),
                          cold_start=lease.cold_start or bool(punctuated and punctuated.cold_start),
                          model_ms=round(reply.compute_ms + (punctuated.model_ms if punctuated else 0), 3))


def check_pcm(pcm: bytes, allow_empty: bool = False) -> None:
    if not pcm and not allow_empty:
        raise SupervisorError("INVALID_REQUEST", "Empty audio", "send 16-bit little-endian mono 16 kHz PCM")
    if len(pcm) % 2:
        raise SupervisorError("INVALID_REQUEST", "Odd audio byte count",
                              f"{len(pcm)} bytes is not a whole number of 16-bit samples")


def stream_lost(stream_id: str, why: str) -> SupervisorError:
    return SupervisorError("STREAM_LOST", "Stream lost", f"Stream '{stream_id}' cannot continue: {why}; "
                           "open a new stream", stream_id=stream_id)
