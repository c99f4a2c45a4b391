"""This process's memory cgroup: its limit, what is really used of it, and how often its OOM killer acted.

A container's memory limit is its cgroup's, not the host's. The cgroup is found from `/proc/self/cgroup` (v2's
unified `0::` line, else v1's `memory` controller) under `/sys/fs/cgroup`, so it is right both inside a
container (where the path is `/`) and on a host where the server was started in a cgroup of its own. The
limit in force is the lowest on the path up to the root.

Used memory is the working set, as Kubernetes and `docker stats` count it: usage less the inactive file pages,
which the kernel reclaims before it would kill anything (v1's `memory.usage_in_bytes` counts all page cache).
Each read is a few small sysfs files (microseconds); nothing is cached, since a limit can change at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import psutil

MB = 1024 * 1024
ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 1 << 60  # v1 writes "no limit" as a page-rounded 2**63 - 1; anything past this is none


class MemoryCgroup:
    def __init__(self, path: Path, version: int, root: Path) -> None:
        self.path, self.version, self.root = path, version, root   # root: the hierarchy's mount point

    def limit_bytes(self) -> int | None:
        """The lowest limit from this cgroup up to the root; None when none is set."""
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        limits = [value for folder in (self.path, *self.path.parents) if folder.is_relative_to(self.root)
                  if (value := read_int(folder / name)) is not None and value < NO_LIMIT]
        return min(limits) if limits else None

    def working_set_bytes(self) -> int | None:
        usage = read_int(self.path / ("memory.current" if self.version == 2 else "memory.usage_in_bytes"))
        if usage is None:
            return None
        stat = read_keyed(self.path / "memory.stat")
        inactive_file = stat.get("inactive_file" if self.version == 2 else "total_inactive_file", 0)
        return max(0, usage - inactive_file)

    def oom_kills(self) -> int:
        """Processes its OOM killer has killed (v2 `memory.events`, v1 `memory.oom_control`)."""
        events = read_keyed(self.path / ("memory.events" if self.version == 2 else "memory.oom_control"))
        return events.get("oom_kill", 0)


class Memory(NamedTuple):
    total: int            # bytes: the cgroup's limit where it is below the host's memory, else the host's memory
    available: int        # bytes left of that
    limited_by: str | None  # "cgroup v1" or "cgroup v2" when the limit is the cgroup's


def limit_and_use() -> tuple[int, int, str] | None:
    """(limit, working set, "cgroup vN") where this server's cgroup limit is below the host's memory."""
    cgroup = own_memory_cgroup()
    limit = cgroup.limit_bytes() if cgroup is not None else None
    if cgroup is None or limit is None or limit >= psutil.virtual_memory().total:
        return None
    return limit, cgroup.working_set_bytes() or 0, f"cgroup v{cgroup.version}"


def memory_now() -> Memory:
    host = psutil.virtual_memory()
    limited = limit_and_use()
    if limited is None:
        return Memory(host.total, host.available, None)
    limit, used, name = limited
    return Memory(limit, max(0, min(host.available, limit - used)), name)


def headroom_mb() -> float | None:
    """What is left under the cgroup's limit (negative past it), or None where no limit applies."""
    limited = limit_and_use()
    return None if limited is None else (limited[0] - limited[1]) / MB


def own_memory_cgroup(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = ROOT) -> MemoryCgroup | None:
    """This process's memory cgroup, or None where there is no readable one."""
    entries = cgroup_paths(proc_cgroup)
    if entries is None:
        return None
    if "memory" in entries and (root / "memory").is_dir():
        return MemoryCgroup(mounted(root / "memory", entries["memory"]), 1, root / "memory")
    if "" in entries and (root / "cgroup.controllers").exists():
        return MemoryCgroup(mounted(root, entries[""]), 2, root)
    return None


def cgroup_paths(proc_cgroup: Path = Path("/proc/self/cgroup")) -> dict[str, str] | None:
    """Each controller's cgroup path for this process ("" is v2's unified one), or None where unreadable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    return {controller: path for _, controllers, path in (line.split(":", 2) for line in lines if line.count(":") >= 2)
            for controller in controllers.split(",")}


def mounted(mount: Path, path: str) -> Path:
    """Where `path` (as /proc/self/cgroup names it) is under the mount. A v1 container without a cgroup
    namespace names its full host path, but has its own cgroup mounted at the root: then that is it."""
    folder = mount / path.lstrip("/")
    return folder if folder.is_dir() else mount


def host_oom_kills() -> int:
    """The whole machine's OOM kills (`/proc/vmstat`), for a server in no limited cgroup."""
    return read_keyed(Path("/proc/vmstat")).get("oom_kill", 0)


def oom_kills() -> int:
    """OOM kills of processes in this server's cgroup (the kernel counts a kill in the victim's cgroup, whether
    its limit or the whole machine ran out), or on the whole machine where no cgroup can be read."""
    cgroup = own_memory_cgroup()
    return cgroup.oom_kills() if cgroup is not None else host_oom_kills()


def read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def read_keyed(path: Path) -> dict[str, int]:
    """`key value` lines (memory.stat, memory.events, memory.oom_control, /proc/vmstat)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {key: int(value) for key, _, value in (line.partition(" ") for line in lines) if value.strip().isdigit()}
