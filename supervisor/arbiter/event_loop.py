"""The arbiter's thread: one poll over the ROUTER socket, a wake-up socket, the processes' exit fds and a timer.

ZeroMQ sockets are not thread-safe and waitress calls us from many threads, so every socket operation and every
change of lifecycle state runs on this one thread. Other threads `call` a function here and wait on the Future it
returns; slow work (a spawn, a smaps read, a reap) goes to a small executor with `offload` and comes back here.

It implements `supervisor.arbiter.loop.Loop`; a callback given an `owner` that raises is reported to
`on_failure` (the arbiter fails that model), anything else is logged and the loop goes on.

Each turn reads every queued message before it runs timers, and a turn that started late (the process was
stopped, or starved of CPU) moves `resumed_at`: the heartbeat watchdog judges silence only from there, so a
paused supervisor does not kill healthy processes for heartbeats still waiting on its own socket.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import tempfile
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import msgspec
import zmq

from supervisor.arbiter.loop import OnFailure, resolve
from supervisor.timer import Timer
from wire import protocol

log = logging.getLogger(__name__)

MAX_WAIT_S = 0.25        # the loop turns at least this often (the housekeeping tick)
STALL_S = 1.0            # a turn this much later than asked for means the supervisor was not listening
MAX_MESSAGES_PER_TURN = 2000


class EventLoop:
    def __init__(self, on_message: Callable[[bytes, Any], None], after_turn: Callable[[], None],
                 on_failure: OnFailure) -> None:
        self._on_message = on_message
        self._after_turn = after_turn
        self._on_failure = on_failure
        self._ipc_dir = tempfile.mkdtemp(prefix="funasr-supervisor-")  # mkdtemp makes it 0700
        self.endpoint = f"ipc://{self._ipc_dir}/router"
        self._context = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone process fails now, not silently
        self._router.bind(self.endpoint)
        self._wake_pull = self._context.socket(zmq.PULL)
        self._wake_pull.bind(f"inproc://wake-{id(self)}")
        self._wake_push = self._context.socket(zmq.PUSH)
        self._wake_push.connect(f"inproc://wake-{id(self)}")
        self._wake_lock = threading.Lock()
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(self._wake_pull, zmq.POLLIN)
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Timer, Callable[[], None], str | None]] = []
        self._sequence = itertools.count()
        self._watched: dict[int, tuple[Callable[[], None], str | None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="supervisor-slow")
        self._to_settle: list[tuple[Future, Any, BaseException | None]] = []
        self.resumed_at = time.monotonic()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="arbiter", daemon=True)

    # -- from any thread -------------------------------------------------------------------------
    @staticmethod
    def now() -> float:
        return time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def where(self) -> str:
        """The loop thread's current stack: logged when a caller gave up waiting on it."""
        frame = sys._current_frames().get(self._thread.ident or 0)
        return "".join(traceback.format_stack(frame)) if frame else "(not running)"

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop soon."""
        self._commands.put(fn)
        with self._wake_lock:
            self._wake_push.send(b"", zmq.NOBLOCK)

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn` on the loop; the Future gets what it returns or raises, after this turn's snapshot."""
        future: Future = Future()

        def run() -> None:
            try:
                self.settle(future, fn())
            except BaseException as exc:  # the caller's Future carries it; the loop goes on
                self.settle(future, error=exc)
        self.post(run)
        return future

    def stop(self) -> None:
        def halt() -> None:
            self._running = False
        if self._thread.is_alive():
            self.post(halt)
            self._thread.join(timeout=10)
        self._executor.shutdown(wait=False, cancel_futures=True)
        for sock in (self._router, self._wake_pull, self._wake_push):
            sock.close(linger=0)
        self._context.term()
        try:
            os.unlink(self.endpoint.removeprefix("ipc://"))
            os.rmdir(self._ipc_dir)
        except OSError:
            pass

    # -- on the loop only ------------------------------------------------------------------------
    def settle(self, future: Future, result: Any = None, error: BaseException | None = None) -> None:
        """Resolve a caller's Future at the end of this turn, after `after_turn` published the snapshot, so
        whoever wakes up reads a state at least as new as the answer it got."""
        self._to_settle.append((future, result, error))

    def call_later(self, delay_s: float, fn: Callable[[], None], owner: str | None = None) -> Timer:
        timer = Timer()
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._sequence), timer, fn, owner))
        return timer

    def watch(self, fd: int, on_ready: Callable[[], None], owner: str | None = None) -> None:
        """Call `on_ready` once `fd` is readable (a pidfd: the process ended)."""
        self._watched[fd] = (on_ready, owner)
        self._poller.register(fd, zmq.POLLIN)

    def offload(self, work: Callable[[], Any], then: Callable[[Any, BaseException | None], None],
                owner: str | None = None) -> None:
        """Run `work` on the executor; `then(result, error)` runs back on the loop."""
        def done(future: Future) -> None:
            error = future.exception()
            self.post(lambda: self._guarded(then, None if error else future.result(), error, owner=owner))
        self._executor.submit(work).add_done_callback(done)

    def send(self, identity: bytes, message: msgspec.Struct) -> bool:
        try:
            self._router.send_multipart([identity, protocol.encoder.encode(message)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # the peer is gone or its queue is full: its exit fd reports the rest
            log.warning("could not send to %r: %s", identity, exc)
            return False

    # -- the loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while self._running:
            wait_s = self._next_wait()
            asked_at = time.monotonic()
            ready = dict(self._poller.poll(int(wait_s * 1000)))
            now = time.monotonic()
            if now - asked_at - wait_s > STALL_S:
                log.warning("supervisor loop resumed %.1f s late: heartbeat silence counts from now",
                            now - asked_at - wait_s)
                self.resumed_at = now
            self._guarded(self._receive)  # messages first: heartbeats that queued up count
            for fd in [fd for fd in ready if isinstance(fd, int) and fd in self._watched]:
                self._guarded(self._unwatch_and_fire, fd)
            self._guarded(self._run_commands)
            self._guarded(self._run_timers)
            self._guarded(self._after_turn)
            self._settle_all()

    def _guarded(self, fn: Callable[..., None], *args: Any, owner: str | None = None) -> None:
        try:
            fn(*args)
        except Exception as exc:
            if owner is None:
                log.exception("supervisor loop: %s failed", getattr(fn, "__name__", fn))
            else:
                self._guarded(self._on_failure, owner, exc)

    def _settle_all(self) -> None:
        settle, self._to_settle = self._to_settle, []
        for future, result, error in settle:
            resolve(future, result, error)

    def _next_wait(self) -> float:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return MAX_WAIT_S
        return min(MAX_WAIT_S, max(0.0, self._timers[0][0] - time.monotonic()))

    def _run_commands(self) -> None:
        while True:
            try:
                self._wake_pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._guarded(command)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer, fn, owner = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(fn, owner=owner)

    def _unwatch_and_fire(self, fd: int) -> None:
        self._poller.unregister(fd)
        on_ready, owner = self._watched.pop(fd)
        self._guarded(on_ready, owner=owner)

    def _receive(self) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                identity, frame = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # wrong frame count: not one of our processes
                log.warning("dropped a message with an unexpected frame count")
                continue
            try:
                message = protocol.supervisor_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                log.warning("dropped an undecodable message from %r: %s", identity, exc)
                continue
            self._guarded(self._on_message, identity, message)
