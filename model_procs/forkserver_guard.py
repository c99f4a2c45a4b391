"""Preloaded into the forkserver only: exit the moment the supervisor dies.

On its own the forkserver notices a dead parent too, but then runs a full interpreter teardown with torch and
funasr loaded (measured 1.4 s). A thread waits on the parent's pidfd and `os._exit`s instead. Children forked
later do not inherit the thread (fork copies only the calling thread), and it holds no lock while it waits.
"""

from __future__ import annotations

import os
import select
import threading


def _exit_with_parent() -> None:
    try:
        pidfd = os.pidfd_open(os.getppid())
    except (OSError, AttributeError):  # no pidfd (old kernel): the forkserver's own EOF check still applies
        return

    def wait() -> None:
        select.select([pidfd], [], [])
        os._exit(0)

    threading.Thread(target=wait, name="parent-watch", daemon=True).start()


_exit_with_parent()
