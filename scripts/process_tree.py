"""What a server's whole process tree (API, supervisor, forkserver, model processes; or one peer process) costs."""

from __future__ import annotations

import psutil


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of every live process in the tree."""
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def pss_mb(pid: int) -> float:
    """Proportional set size of the tree, in MB: pages shared between its processes (mapped weights, the
    forkserver's copy-on-write pages) are counted once in all."""
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            pass
    return total / (1024 * 1024)
