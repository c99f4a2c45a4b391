"""A scripted spawner for the arbiter's unit tests: a test double, since these tests are about the supervisor's
own rules (transitions, queues, scaling, restarts, deadlines), not about processes or funasr.

Each fake "process" is a thread speaking the real wire protocol over a real ZeroMQ DEALER socket to the
arbiter's ROUTER, with a pipe standing in for its pidfd. Its behaviour comes from a `Script` per model.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass

import zmq

from wire import protocol
from wire.protocol import (Batch, Heartbeat, LoadFailed, LoadTimings, Punctuate, Ready, Replies, Reply, Shutdown,
                           StreamDrop, StreamFeed, WorkerSpec)

_pids = itertools.count(900000)


@dataclass
class Script:
    load_s: float = 0.01           # time to Ready
    fail_load: str | None = None   # send LoadFailed with this reason
    exit_before_reason: bool = False  # the exit is seen before the LoadFailed message (two channels race)
    reply_s: float = 0.0           # time per request (per piece of audio)
    hang: bool = False             # stop answering and beating once a request arrives
    rss_mb: float = 100.0
    unique_mb: float = 50.0
    weights_file: str | None = None  # a real file it says it maps (its page-cache residency is really read)


class FakeChild:
    def __init__(self, spec: WorkerSpec, script: Script, context: zmq.Context) -> None:
        self.pid = next(_pids)
        self.spec, self.script = spec, script
        self.exitcode: int | None = None
        self.requests: list[object] = []
        self._read, self._write = os.pipe()
        self.exit_fd = self._read
        self._dead = threading.Event()
        self._context = context
        threading.Thread(target=self._run, daemon=True).start()

    # -- the Child protocol ---------------------------------------------------------------------------
    def signal(self, signum: int) -> None:
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.die(-signum)

    def reap(self) -> int | None:
        self._dead.wait(5)
        return self.exitcode

    def close(self) -> None:
        os.close(self._read)

    # -- test controls --------------------------------------------------------------------------------
    def die(self, exitcode: int) -> None:
        if not self._dead.is_set():
            self.exitcode = exitcode
            self._dead.set()
            os.write(self._write, b"x")
            os.close(self._write)

    @property
    def alive(self) -> bool:
        return not self._dead.is_set()

    # -- the fake process -----------------------------------------------------------------------------
    def _socket(self, identity: bytes) -> zmq.Socket:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, identity)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.spec.endpoint)
        return socket

    def _run(self) -> None:
        socket = self._socket(self.spec.identity)
        try:
            if self._dead.wait(self.script.load_s):
                return
            if self.script.fail_load:
                self._fail_load(socket)
                return
            timings = LoadTimings(process_start_ms=1, imports_ms=0, weights_ms=self.script.load_s * 1000,
                                  trim_ms=0, warmup_ms=0, total_ms=self.script.load_s * 1000)
            threading.Thread(target=self._beat, daemon=True).start()
            mapped = (self.script.weights_file,) if self.script.weights_file else ()
            socket.send(protocol.encoder.encode(Ready(pid=self.pid, timings=timings, resolved_source="/fake",
                                                      source_was_cached=True, loader="mapped",
                                                      weights_files=mapped)))
            self._serve(socket)
        finally:
            socket.close(linger=0)

    def _fail_load(self, socket: zmq.Socket) -> None:
        failed = protocol.encoder.encode(LoadFailed(pid=self.pid, reason=self.script.fail_load, hint="fix the source"))
        if self.script.exit_before_reason:
            self.die(protocol.EXIT_LOAD_FAILED)
            time.sleep(0.1)
        socket.send(failed)
        self.die(protocol.EXIT_LOAD_FAILED)

    def _beat(self) -> None:
        socket = self._socket(self.spec.identity + protocol.HEARTBEAT_SUFFIX)
        while not self._dead.wait(0.05):
            if not self.script.hang:
                socket.send(protocol.encoder.encode(Heartbeat(pid=self.pid)))
        socket.close(linger=0)

    def _serve(self, socket: zmq.Socket) -> None:
        partial: dict[str, str] = {}
        while not self._dead.is_set():
            if not socket.poll(20):
                continue
            message = protocol.worker_decoder.decode(socket.recv())
            self.requests.append(message)
            if isinstance(message, Shutdown):
                self.die(protocol.EXIT_OK)
                return
            if isinstance(message, StreamDrop):
                partial.pop(message.stream_id, None)
                continue
            if self.script.hang:
                continue
            if self._dead.wait(self.script.reply_s):
                return
            answer = Replies(items=tuple(self._answer(m, partial) for m in message.items)) \
                if isinstance(message, Batch) else self._answer(message, partial)
            socket.send(protocol.encoder.encode(answer))

    @staticmethod
    def _answer(message: Punctuate | StreamFeed, partial: dict[str, str]) -> Reply:
        if isinstance(message, Punctuate):
            return Reply(request_id=message.request_id, text=message.text + "。", compute_ms=1.0)
        text = f"[{len(message.pcm)}]"
        partial[message.stream_id] = partial.get(message.stream_id, "") + text
        done = partial.pop(message.stream_id) if message.is_final else partial[message.stream_id]
        return Reply(request_id=message.request_id, text=text, partial_text=done, compute_ms=1.0)


class FakeSpawner:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.children: list[FakeChild] = []
        self._context = zmq.Context.instance()

    def script(self, model_id: str) -> Script:
        return self.scripts.setdefault(model_id, Script())

    def boot(self) -> float:
        return 0.0

    def spawn(self, spec: WorkerSpec) -> FakeChild:
        child = FakeChild(spec, self.script(spec.model_id), self._context)
        self.children.append(child)
        return child

    def memory_mb(self, pid: int) -> tuple[float, float]:
        child = next((c for c in self.children if c.pid == pid), None)
        return (child.script.rss_mb, child.script.unique_mb) if child and child.alive else (0.0, 0.0)

    def shutdown(self) -> None:
        for child in self.children:
            child.die(-signal.SIGKILL)

    def alive(self, model_id: str) -> list[FakeChild]:
        return [c for c in self.children if c.alive and c.spec.model_id == model_id]

    def wait_all_gone(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while any(c.alive for c in self.children):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
