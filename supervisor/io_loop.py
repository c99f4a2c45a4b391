"""The one thread that owns the ZeroMQ ROUTER socket and watches the model processes' exit sentinels.

ZeroMQ sockets are not thread-safe and waitress calls us from many threads, so every socket operation runs
here. Other threads `submit` a callable (queue + an inproc wake-up) and never touch a socket themselves.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import tempfile
import threading
from concurrent.futures import Future
from typing import Callable

import msgspec
import zmq

from model_procs import protocol

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, protocol.Ready | protocol.LoadFailed], None]


class PeerGone(Exception):
    """The model process a request was sent to is gone (crashed, unloaded, or never reachable)."""


class IoLoop:
    def __init__(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        self._ipc_dir = tempfile.mkdtemp(prefix="funasr-supervisor-")  # mkdtemp makes it 0700
        self.endpoint = f"ipc://{self._ipc_dir}/router"
        self._context = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone process fails now, not silently
        self._router.bind(self.endpoint)
        self._wake_address = f"inproc://wake-{id(self)}"
        self._wake_pull = self._context.socket(zmq.PULL)
        self._wake_pull.bind(self._wake_address)
        self._wake_push = self._context.socket(zmq.PUSH)
        self._wake_push.connect(self._wake_address)
        self._wake_lock = threading.Lock()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(self._wake_pull, zmq.POLLIN)
        self._watched: dict[int, Callable[[], None]] = {}
        self._pending: dict[int, tuple[bytes, Future]] = {}  # request id -> (worker identity, reply future)
        self._request_ids = itertools.count(1)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="supervisor-io", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, command: Callable[[], None]) -> None:
        """Run `command` on the I/O thread, soon. Safe from any thread."""
        self._commands.put(command)
        with self._wake_lock:
            self._wake_push.send(b"", zmq.NOBLOCK)

    def send(self, identity: bytes, message: msgspec.Struct) -> None:
        frame = protocol.encoder.encode(message)
        self.submit(lambda: self._send_now(identity, frame))

    def new_request_id(self) -> int:
        return next(self._request_ids)

    def request(self, identity: bytes, message: msgspec.Struct) -> Future:
        """Send a request (it carries `request_id`); the future gets the Reply or RequestFailed."""
        future: Future = Future()
        frame = protocol.encoder.encode(message)

        def send() -> None:
            self._pending[message.request_id] = (identity, future)
            if not self._send_now(identity, frame):
                self._pending.pop(message.request_id, None)
                future.set_exception(PeerGone("the model process is not reachable"))
        self.submit(send)
        return future

    def forget(self, request_id: int) -> None:
        """A caller gave up waiting (deadline): drop the pending entry so it cannot leak."""
        self.submit(lambda: self._pending.pop(request_id, None))

    def fail_pending(self, identity: bytes, reason: str) -> None:
        """On the I/O thread, when a process exits: every request it still owed fails at once."""
        for request_id, (owner, future) in list(self._pending.items()):
            if owner == identity:
                del self._pending[request_id]
                future.set_exception(PeerGone(reason))

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Call `on_ready` on the I/O thread once `fd` becomes readable (a process sentinel: it exited)."""
        def register() -> None:
            self._watched[fd] = on_ready
            self._poller.register(fd, zmq.POLLIN)
        self.submit(register)

    def stop(self) -> None:
        def halt() -> None:
            self._running = False
        self.submit(halt)
        self._thread.join(timeout=5)
        for sock in (self._router, self._wake_pull, self._wake_push):
            sock.close(linger=0)
        self._context.term()
        try:
            os.unlink(self.endpoint.removeprefix("ipc://"))
            os.rmdir(self._ipc_dir)
        except OSError:
            pass

    def _send_now(self, identity: bytes, frame: bytes) -> bool:
        try:
            self._router.send_multipart([identity, frame], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # the peer is gone or its queue is full: the exit watch reports it
            log.warning("could not send to %r: %s", identity, exc)
            return False

    def _run(self) -> None:
        while self._running:
            for source, _ in self._poller.poll():
                if source is self._router:
                    self._receive()
                elif source is self._wake_pull:
                    self._run_commands()
                else:
                    self._fire_watch(source)

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
            try:
                command()
            except Exception:
                log.exception("I/O thread command failed")

    def _receive(self) -> None:
        while True:
            try:
                identity, frame = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # wrong frame count: not one of our workers
                log.warning("dropped a message with an unexpected frame count")
                continue
            try:
                message = protocol.supervisor_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                log.warning("dropped an undecodable message from %r: %s", identity, exc)
                continue
            if isinstance(message, (protocol.Reply, protocol.RequestFailed)):
                self._resolve(identity, message)
                continue
            try:
                self._on_message(identity, message)
            except Exception:
                log.exception("handling %s from %r failed", type(message).__name__, identity)

    def _resolve(self, identity: bytes, message: protocol.Reply | protocol.RequestFailed) -> None:
        owner, future = self._pending.pop(message.request_id, (None, None))
        if future is None or owner != identity:
            log.warning("dropped a reply to unknown request %d from %r", message.request_id, identity)
            return
        future.set_result(message)

    def _fire_watch(self, fd: int) -> None:
        self._poller.unregister(fd)
        callback = self._watched.pop(fd)
        try:
            callback()
        except Exception:
            log.exception("exit watch for fd %d failed", fd)
