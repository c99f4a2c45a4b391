"""Spawning, watching and stopping model processes through a forkserver with torch and funasr preloaded."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Callable

import multiprocess
from multiprocess import forkserver, resource_tracker

from model_procs import protocol
from model_procs.protocol import Shutdown, WorkerSpec
from model_procs.worker import run_worker
from supervisor.io_loop import IoLoop

log = logging.getLogger(__name__)

PRELOAD = ["torch", "funasr", "model_procs.forkserver_guard"]


class WorkerExited(Exception):
    """The process ended before it said Ready."""


class LoadFailedError(Exception):
    """The process said LoadFailed: its reason and a hint for the user."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def describe_exit(exitcode: int | None) -> str:
    """A sentence for `last_error`: a signal by name, or what our exit-code protocol means."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = ", perhaps out of memory" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    meanings = {protocol.EXIT_OK: "exited cleanly", protocol.EXIT_LOAD_FAILED: "could not load its model",
                protocol.EXIT_SUPERVISOR_GONE: "lost its supervisor"}
    return meanings.get(exitcode, f"exited with code {exitcode}")


class WorkerHandle:
    """One model process. Its exit is observed once, on the I/O thread; everyone else waits on `exited`."""

    def __init__(self, model_id: str, identity: bytes) -> None:
        self.model_id = model_id
        self.identity = identity
        self.process = None
        self.pid: int = 0
        self.ready: Future = Future()          # Ready message, or LoadFailed / WorkerExited as exception
        self.exited = threading.Event()
        self.exitcode: int | None = None
        self.last_heartbeat = time.monotonic()
        self.kill_reason: str | None = None    # set when the supervisor itself killed it (hang, deadline, cap)

    def record_exit(self) -> None:
        """Called on the I/O thread when the sentinel fires: read the exit status exactly once."""
        self.process.join(0)
        self.exitcode = self.process.exitcode
        self.process.close()
        self.exited.set()
        if not self.ready.done():
            self.ready.set_exception(WorkerExited(describe_exit(self.exitcode)))

    def kill(self, reason: str) -> None:
        """The supervisor's own verdict (a watchdog): remembered so last_error says why, not just SIGKILL."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self.signal(signal.SIGKILL)

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.last_heartbeat

    def describe_exit(self) -> str:
        return f"killed by the supervisor: {self.kill_reason}" if self.kill_reason else describe_exit(self.exitcode)

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait_exited(self, timeout: float) -> bool:
        return self.exited.wait(timeout)


class Spawner:
    """Uses the forkserver: booted once, it imports torch and funasr so each new model process starts warm.

    The forkserver is per OS process, so Spawners in one process share it; the last one closed stops it.
    """

    _users = 0
    _users_lock = threading.Lock()

    def __init__(self, loop: IoLoop, cache_dir: str, log_format: str = "text") -> None:
        with Spawner._users_lock:
            Spawner._users += 1
        self._loop = loop
        self.handles: dict[bytes, WorkerHandle] = {}   # by ZeroMQ identity, for routing replies
        self._cache_dir = cache_dir
        self._log_format = log_format
        self._context = multiprocess.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    def boot(self) -> float:
        """Start the forkserver now (it preloads torch+funasr: seconds); returns the time it took."""
        started = time.monotonic()
        forkserver.ensure_running()
        return time.monotonic() - started

    def forkserver_pid(self) -> int | None:
        return getattr(forkserver._forkserver, "_forkserver_pid", None)

    def spawn(self, model_id: str, source: str, device: str, threads: int,
              on_exit: Callable[[WorkerHandle], None]) -> WorkerHandle:
        identity = f"{model_id}:{uuid.uuid4().hex[:12]}".encode()
        spec = WorkerSpec(model_id=model_id, source=source, device=device, threads=threads,
                          endpoint=self._loop.endpoint, identity=identity, supervisor_pid=os.getpid(),
                          cache_dir=self._cache_dir, spawned_at=time.monotonic(), log_format=self._log_format)
        handle = WorkerHandle(model_id, identity)
        self.handles[identity] = handle  # before start: its Ready may arrive before start() returns
        process = self._context.Process(target=run_worker, args=(spec,), name=f"model:{model_id}", daemon=True)
        try:
            process.start()
        except BaseException:
            del self.handles[identity]
            raise
        handle.process, handle.pid = process, process.pid

        def exited() -> None:
            handle.record_exit()
            self.handles.pop(identity, None)
            on_exit(handle)
        self._loop.watch(process.sentinel, exited)
        return handle

    def discard(self, handle: WorkerHandle) -> None:
        """Kill a process whose load we gave up on, and wait until it is reaped."""
        if not handle.exited.is_set():
            handle.signal(signal.SIGKILL)
        handle.wait_exited(10)

    def shutdown(self) -> None:
        """Stop the forkserver and multiprocess's resource tracker when no other Spawner uses them (both would
        also exit on their own once this process is gone)."""
        with Spawner._users_lock:
            Spawner._users -= 1
            if Spawner._users == 0:
                pid = forkserver._forkserver._forkserver_pid
                if pid:  # it has nothing to save: skip its 1.4 s interpreter teardown
                    os.kill(pid, signal.SIGKILL)
                forkserver._forkserver._stop()
                resource_tracker._resource_tracker._stop()

    def stop(self, handle: WorkerHandle, grace_s: float) -> str:
        """Ask, then SIGTERM, then SIGKILL; returns how it ended. The process is reaped when this returns."""
        self._loop.send(handle.identity, Shutdown())
        if handle.wait_exited(grace_s):
            return "asked"
        handle.signal(signal.SIGTERM)
        if handle.wait_exited(grace_s):
            return "sigterm"
        handle.signal(signal.SIGKILL)
        handle.wait_exited(10)
        return "sigkill"
