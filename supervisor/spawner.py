"""Starting and signalling model processes: a forkserver with torch and funasr preloaded, pidfds for the rest.

The arbiter sees a process only through `Child`: a pid, an fd that turns readable when the process ends (its
pidfd), `signal` (through the pidfd, so a signal can never reach a reused pid) and `reap` (the exit code). Unit
tests inject a scripted spawner with the same shape.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Protocol

import multiprocess
from multiprocess import forkserver, resource_tracker

from wire import protocol
from wire.protocol import WorkerSpec
from model_procs.worker import run_worker
from supervisor.memory import private_dirty_mb, rss_mb

log = logging.getLogger(__name__)

PRELOAD = ["torch", "funasr", "model_procs.forkserver_guard"]


def describe_exit(exitcode: int | None) -> str:
    """A sentence for `last_error`: a signal by name, or what our exit-code protocol means."""
    if exitcode is None:
        return "ended (exit status unknown)"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"  # the OOM killer's own SIGKILLs: Replica.oom_killed
    meanings = {protocol.EXIT_OK: "exited cleanly", protocol.EXIT_LOAD_FAILED: "could not load its model",
                protocol.EXIT_SUPERVISOR_GONE: "lost its supervisor"}
    return meanings.get(exitcode, f"exited with code {exitcode}")


class Child(Protocol):
    pid: int
    exit_fd: int

    def signal(self, signum: int) -> None: ...

    def reap(self) -> int | None: ...

    def close(self) -> None: ...


class Spawner(Protocol):
    def boot(self) -> float: ...

    def spawn(self, spec: WorkerSpec) -> Child: ...

    def memory_mb(self, pid: int) -> tuple[float, float]: ...

    def shutdown(self) -> None: ...


class ForkserverChild:
    """A model process started by the forkserver (so not our child: we cannot waitpid it; the forkserver
    reaps it and reports the exit code on the process's sentinel)."""

    def __init__(self, process) -> None:
        self._process = process
        self.pid: int = process.pid
        self.exit_fd = os.pidfd_open(self.pid)
        self._closed = False

    def signal(self, signum: int) -> None:
        if self._closed:  # its fd number may belong to another process's pidfd by now
            return
        try:
            signal.pidfd_send_signal(self.exit_fd, signum)
        except ProcessLookupError:  # already ended: the pidfd still names that process, never a new one
            pass

    def reap(self) -> int | None:
        """Blocking (run off the loop): wait for the forkserver's report of the exit code."""
        self._process.join(5)
        code = self._process.exitcode
        if code is not None:
            self._process.close()
        return code

    def close(self) -> None:
        """On the loop, after the reap: signals are sent only from the loop, so none can use a reused fd."""
        if not self._closed:
            self._closed = True
            os.close(self.exit_fd)


class ForkserverSpawner:
    """The forkserver is per OS process, so spawners in one process share it; the last one closed stops it."""

    _users = 0
    _users_lock = threading.Lock()

    def __init__(self) -> None:
        with ForkserverSpawner._users_lock:
            ForkserverSpawner._users += 1
        self._context = multiprocess.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    def boot(self) -> float:
        """Start the forkserver now (it preloads torch+funasr: seconds); returns the time it took."""
        started = time.monotonic()
        forkserver.ensure_running()
        return time.monotonic() - started

    @staticmethod
    def forkserver_pid() -> int | None:
        return getattr(forkserver._forkserver, "_forkserver_pid", None)

    def spawn(self, spec: WorkerSpec) -> ForkserverChild:
        process = self._context.Process(target=run_worker, args=(spec,), name=f"model:{spec.model_id}",
                                        daemon=True)
        process.start()
        return ForkserverChild(process)

    @staticmethod
    def memory_mb(pid: int) -> tuple[float, float]:
        """(RSS, Private_Dirty) in MB; the smaps read costs 6–15 ms on a 1 GB process, so never on the loop."""
        return rss_mb(pid), private_dirty_mb(pid)

    def shutdown(self) -> None:
        """Stop the forkserver and multiprocess's resource tracker when no other spawner uses them."""
        with ForkserverSpawner._users_lock:
            ForkserverSpawner._users -= 1
            if ForkserverSpawner._users == 0:
                pid = self.forkserver_pid()
                if pid:  # it has nothing to save: skip its 1.4 s interpreter teardown
                    os.kill(pid, signal.SIGKILL)
                forkserver._forkserver._stop()
                resource_tracker._resource_tracker._stop()
