"""Request queues and dispatch, on the arbiter thread.

Every request joins its model's bounded queue and goes to an idle replica (a stream's work only to the replica
holding its cache); long audio comes back to the tail of the queue between pieces, so others interleave. An idle
replica takes a batch: the first work it can run and up to `max_batch - 1` more of the same sort queued behind
it (Triton's dynamic batcher; streams pinned to that replica form a sequence batch, one piece per stream), sent
as one `Batch` and answered by one `Replies`. Batches form from what waits while replicas are busy, so an idle
server adds no latency; `max_batch_delay_ms` may hold a short batch back to let more join. A
request waits in the queue while its model loads, reloads or scales; its deadline counts only while the model
serves. A running piece that outlives `request_timeout_s` means the process is stuck: that is reported up
(`RequestStuck`), as is a finished piece (`WorkDone`: a draining replica may now stop).
"""

from __future__ import annotations

import itertools
import logging
from typing import Callable

from supervisor.arbiter.board import Board
from supervisor.arbiter.events import Event, RequestStuck, Unreachable, WorkDone
from supervisor.arbiter.loop import Loop
from supervisor.config import ServerSettings
from supervisor.metrics import SupervisorMetrics
from supervisor.replica import Model, Replica
from supervisor.streams import StreamRegistry, stream_lost
from supervisor.work import AudioWork, OpenStreamWork, Work
from wire.errors import ErrorCode, SupervisorError
from wire.protocol import Batch, Reply, RequestFailed, StreamDrop

log = logging.getLogger(__name__)

OUTCOMES = {ErrorCode.INFERENCE_TIMEOUT: "timeout", ErrorCode.MODEL_CRASHED: "crashed",
            ErrorCode.STREAM_LOST: "lost", ErrorCode.INVALID_REQUEST: "invalid", ErrorCode.OVERLOADED: "overloaded",
            **dict.fromkeys((ErrorCode.MODEL_NOT_READY, ErrorCode.LOAD_FAILED, ErrorCode.LOAD_TIMEOUT,
                             ErrorCode.CONFLICT, ErrorCode.INSUFFICIENT_MEMORY), "unavailable")}


class Dispatcher:
    def __init__(self, loop: Loop, models: dict[str, Model], replicas: dict[bytes, Replica],
                 streams: StreamRegistry, board: Board, settings: ServerSettings, metrics: SupervisorMetrics,
                 report: Callable[[Event], None]) -> None:
        self.loop, self.models, self.replicas, self.streams = loop, models, replicas, streams
        self.board, self.settings, self.metrics, self.report = board, settings, metrics, report
        self._request_ids = itertools.count(1)

    # -- into the queue ------------------------------------------------------------------------------
    def check_room(self, model: Model) -> None:
        """Raise what refuses new work for `model` before anything else is done for it."""
        if self.board.closing:
            raise SupervisorError(ErrorCode.MODEL_NOT_READY, "Server is shutting down",
                                  "retry against another instance", model_type=model.model_id, retry_after_s=5)
        if len(model.queue) >= model.config.max_queue:
            raise SupervisorError(ErrorCode.OVERLOADED, f"Model {model.model_id} is overloaded",
                                  f"its queue is full ({model.config.max_queue} requests); retry shortly, or raise "
                                  "max_queue / max_replicas", model_type=model.model_id, retry_after_s=1)

    def enqueue(self, model: Model, work: Work) -> None:
        model.queue.append(work)
        self.pump(model)
        self.board.changed()

    # -- out of the queue ----------------------------------------------------------------------------
    def pump(self, model: Model) -> None:
        """Give queued work to idle replicas, oldest first, skipping work whose replica is busy."""
        idle = [r for r in model.replicas if r.ready and not r.stopping and not r.running]
        taken: set[int] = set()
        for work in list(model.queue):
            if id(work) in taken:  # in a batch already
                continue
            if isinstance(work, OpenStreamWork):
                self._place_stream(model, work)
                continue
            target = self._pick(model, work, idle)
            if target is None:
                continue
            batch = self._batch(model, work, target)
            if self._hold(model, batch):
                continue
            for member in batch:
                model.queue.remove(member)
                taken.add(id(member))
            idle.remove(target)
            self._run(model, target, batch)

    def _batch(self, model: Model, first: Work, target: Replica) -> list[Work]:
        """`first` and the queued work behind it that may run in the same hand-off on `target`: of the same sort,
        not pinned elsewhere, and at most one piece per stream (a stream seen and not taken blocks its later
        pieces too, so each stream's audio keeps its order). Of the work any replica may take, a replica takes
        its share only, so the others do not idle while it runs a long batch."""
        limit, batch = model.config.max_batch, [first]
        if limit == 1 or first.sort is None:
            return batch
        unpinned = sum(work.pinned is None for work in model.queue)
        share = -(-unpinned // max(1, len(model.serving()))) if target.generation == model.generation \
            and not target.draining else 0
        share -= first.pinned is None
        seen = {first.stream_key}
        for work in model.queue:
            if len(batch) == limit:
                break
            if work is first or work.sort != first.sort:
                continue
            if work.stream_key is not None and work.stream_key in seen:
                continue
            seen.add(work.stream_key)
            if work.pinned == target.identity:
                batch.append(work)
            elif work.pinned is None and share > 0:
                batch.append(work)
                share -= 1
        return batch

    def _hold(self, model: Model, batch: list[Work]) -> bool:
        """With `max_batch_delay_ms`, a batch short of `max_batch` waits until its oldest work has waited that
        long (then it goes as it is); a timer pumps again."""
        delay_s = model.config.max_batch_delay_ms / 1000
        if delay_s <= 0 or len(batch) >= model.config.max_batch or batch[0].sort is None:
            return False
        left_s = batch[0].enqueued_at + delay_s - self.loop.now()
        if left_s <= 0:
            return False
        if model.batch_timer is None:
            def again() -> None:
                model.batch_timer = None
                self.pump(model)
            model.batch_timer = self.loop.call_later(left_s, again, model.model_id)
        return True

    @staticmethod
    def _pick(model: Model, work: Work, idle: list[Replica]) -> Replica | None:
        if work.pinned is not None:
            return next((r for r in idle if r.identity == work.pinned), None)
        usable = [r for r in idle if r.generation == model.generation and not r.draining]
        return min(usable, key=lambda r: len(r.streams), default=None)

    def _place_stream(self, model: Model, work: OpenStreamWork) -> None:
        """On the serving replica with the fewest streams, below max_streams_per_replica; when every one is
        full it waits for a scale-up if max_replicas allows one, else it is refused."""
        limit = self.settings.max_streams_per_replica
        serving = [r for r in model.serving() if len(r.streams) < limit]
        target = min(serving, key=lambda r: (len(r.streams), bool(r.running)), default=None)
        if target is not None:
            model.queue.remove(work)
            self._open(model, work, target)
        elif model.serving() and len(model.current()) >= model.config.replica_limit:
            model.queue.remove(work)
            self.finish(model, work, SupervisorError(
                ErrorCode.OVERLOADED, f"Model {model.model_id} holds as many streams as it may",
                f"each of its {len(model.current())} processes holds max_streams_per_replica={limit} streams; "
                "finish some, or raise max_replicas or [server] max_streams_per_replica",
                model_type=model.model_id, retry_after_s=1))

    def _open(self, model: Model, work: OpenStreamWork, replica: Replica) -> None:
        stream = work.stream
        stream.identity = replica.identity
        replica.streams.add(stream.stream_id)
        self.streams.add(stream)
        self.finish(model, work)

    def _run(self, model: Model, replica: Replica, batch: list[Work]) -> None:
        for work in batch:
            work.request_id = next(self._request_ids)
        replica.running, replica.last_used = batch, self.loop.now()
        messages = tuple(work.message(work.request_id) for work in batch)
        model.usage.batched(len(batch))
        if not self.loop.send(replica.identity, messages[0] if len(messages) == 1 else Batch(items=messages)):
            replica.running = []
            self.report(Unreachable(model, replica))
            for work in batch:
                self.finish(model, work, self._cut_off(replica, work, "its process is unreachable"))
            return
        timeout = self.settings.request_timeout_s
        replica.deadline = self.loop.call_later(timeout, lambda: self._stuck(model, replica, batch), model.model_id)

    # -- back from a replica -------------------------------------------------------------------------
    def on_replies(self, replica: Replica, replies: tuple[Reply | RequestFailed, ...]) -> None:
        """Answers to the batch the replica runs; once all of it is answered the replica takes more."""
        model = self.models[replica.model_id]
        for reply in replies:
            work = next((w for w in replica.running if w.request_id == reply.request_id), None)
            if work is None:
                log.warning("model %s: dropped a reply to unknown request %d from pid %d", replica.model_id,
                            reply.request_id, replica.pid)
                continue
            replica.running.remove(work)
            self._answered(model, replica, work, reply)
        if replica.running or replica.deadline is None:
            return
        replica.deadline.cancel()
        replica.deadline, replica.last_used = None, self.loop.now()
        self.report(WorkDone(model, replica))
        self.pump(model)

    def _answered(self, model: Model, replica: Replica, work: Work, reply: Reply | RequestFailed) -> None:
        if isinstance(reply, RequestFailed):
            self.finish(model, work, SupervisorError(
                ErrorCode.INTERNAL, f"Model {model.model_id} could not process the request", reply.message))
            return
        model.usage.worked(reply.cpu_ms, work.piece_audio_ms())
        if work.absorb(reply):
            self.finish(model, work)
        else:  # more audio to go: back to the tail, on the replica that holds its stream
            work.pinned = replica.identity
            work.requeued()
            self._requeue(model, work)

    @staticmethod
    def _requeue(model: Model, work: Work) -> None:
        """At the tail, but ahead of later feeds of the same stream, so its audio stays in order."""
        for index, queued in enumerate(model.queue):
            if queued.stream_key is not None and queued.stream_key == work.stream_key:
                model.queue.insert(index, work)
                return
        model.queue.append(work)

    def _stuck(self, model: Model, replica: Replica, batch: list[Work]) -> None:
        if replica.running is not batch or not batch:
            return
        timeout = self.settings.request_timeout_s
        replica.running, replica.deadline = [], None
        self.report(RequestStuck(model, replica, timeout))
        for work in batch:
            self.finish(model, work, SupervisorError(
                ErrorCode.INFERENCE_TIMEOUT, f"Model {model.model_id} did not answer within {timeout:g} s",
                "its process made no progress and is being replaced; retry shortly, or raise [server] "
                "request_timeout_s"))

    def finish(self, model: Model, work: Work, error: SupervisorError | None = None) -> None:
        """Answer the caller (after this turn's snapshot) and account for the request."""
        elapsed_s = self.loop.now() - work.enqueued_at
        outcome = "ok" if error is None else OUTCOMES.get(error.code, "error")
        model.usage.record(outcome, elapsed_s * 1000)
        if outcome not in ("invalid", "unavailable", "overloaded"):
            self.metrics.request_duration.labels(model.model_id).observe(elapsed_s)
        if isinstance(work, AudioWork):
            self._audio_done(work, error)
        self.board.settle(work.future, None if error else work.result(), error)
        self.board.changed()

    def _audio_done(self, work: AudioWork, error: SupervisorError | None) -> None:
        stream = work.stream
        if stream is not None:
            stream.pending -= 1
            stream.touch()
        ended = error is None and work.is_final
        if error is not None and work.offset > 0 and stream is not None:
            self.streams.lose(stream.stream_id, "a feed failed part-way through its audio")
            ended = True
        if error is not None and work.offset > 0 or ended:
            self.drop_stream(work.pinned or (stream.identity if stream else None), work.stream_id,
                             tell_process=not (error is None and work.is_final))
        if ended and stream is not None:
            self.streams.remove(stream.stream_id)

    # -- failure fan-out -------------------------------------------------------------------------------
    def fail_replica(self, model: Model, replica: Replica, reason: str) -> None:
        """A replica is gone: what it ran, what waited for it and its streams fail; the rest goes elsewhere."""
        running, replica.running = replica.running, []
        for work in running:
            self.finish(model, work, self._cut_off(replica, work, reason))
        for stream_id in replica.streams:
            self.streams.lose(stream_id, f"its model process went away ({reason})")
        replica.streams.clear()
        for waiting in [w for w in model.queue if w.pinned == replica.identity]:
            model.queue.remove(waiting)
            self.finish(model, waiting, self._cut_off(replica, waiting, reason))
        self.pump(model)

    @staticmethod
    def _cut_off(replica: Replica, work: Work, reason: str) -> SupervisorError:
        if work.stream is not None and isinstance(work, AudioWork):
            return stream_lost(work.stream.stream_id, reason)
        if replica.stopping and not replica.kill_reason:
            return SupervisorError(ErrorCode.MODEL_NOT_READY,
                                   f"Model {replica.model_id} was stopped before the request finished",
                                   "retry the request", model_type=replica.model_id, retry_after_s=1)
        return SupervisorError(ErrorCode.MODEL_CRASHED, f"Model {replica.model_id} process went away: {reason}",
                               "retry: a required model is restarted; see /model/info last_error")

    def fail_queue(self, model: Model, error: Callable[[], SupervisorError]) -> None:
        waiting, model.queue = list(model.queue), type(model.queue)()
        for work in waiting:
            self.finish(model, work, error())

    def expire_queue(self, model: Model) -> None:
        """Requests that waited past their deadline while the model served: it is busy, not stuck."""
        if not model.serving():
            return
        now = self.loop.now()
        for work in [w for w in model.queue if now > w.queue_deadline]:
            model.queue.remove(work)
            self.finish(model, work, SupervisorError(
                ErrorCode.INFERENCE_TIMEOUT, f"Model {model.model_id} was busy for {work.wait_s:g} s",
                "the request waited in the queue behind others; the model is healthy: retry, raise max_replicas, "
                "or raise [server] request_timeout_s"))

    def drop_stream(self, identity: bytes | None, stream_id: str, tell_process: bool = True) -> None:
        """Forget a stream on its replica (its cache freed there; no reply comes back)."""
        replica = self.replicas.get(identity) if identity else None
        if replica is None:
            return
        replica.streams.discard(stream_id)
        if tell_process and not replica.stopping:
            self.loop.send(replica.identity, StreamDrop(request_id=0, stream_id=stream_id))
        self.report(WorkDone(self.models[replica.model_id], replica))
