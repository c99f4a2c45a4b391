"""The cores this server may use, and what `threads = "auto"` / `max_replicas = "auto"` become on them.

A container's CPU limit is its cgroup's quota (`cpu.max` in cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us`
in v1), not the host's core count; the process's CPU affinity (taskset, cpusets) bounds it too. The lowest of
these is what the server has.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from supervisor.cgroup import ROOT, cgroup_paths, mounted


def usable_cores(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = ROOT) -> int:
    """Whole cores this process may use: its affinity, lowered by a CPU quota on its cgroup path."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_quota(proc_cgroup, root)
    return max(1, min(cores, math.floor(quota))) if quota is not None else cores


def cgroup_quota(proc_cgroup: Path, root: Path) -> float | None:
    """The lowest CPU quota (in cores) from this process's cgroup up to the root, or None when there is none."""
    paths = cgroup_paths(proc_cgroup)
    if paths is None:
        return None
    if "" in paths and (root / "cgroup.controllers").exists():
        return lowest(root, paths[""], lambda folder: v2_quota(folder / "cpu.max"))
    for name in ("cpu", "cpu,cpuacct"):
        if "cpu" in paths and (root / name).is_dir():
            return lowest(root / name, paths["cpu"], v1_quota)
    return None


def lowest(mount: Path, path: str, read) -> float | None:
    folder = mounted(mount, path)
    quotas = [q for q in (read(f) for f in [folder, *folder.parents] if f == mount or mount in f.parents)
              if q is not None]
    return min(quotas, default=None)


def v2_quota(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return int(quota) / int(period) if quota.isdigit() and period.isdigit() and int(period) else None


def v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def auto_threads(cores: int) -> int:
    """Intra-op threads per process: 1 on small boxes (2 threads on 2 busy cores ran up to 50x slower: processes
    and the API share the cores), a few on large ones, where one process's forward can use them."""
    return 1 if cores <= 4 else min(8, cores // 4)


def auto_replicas(cores: int, threads: int) -> int:
    """Processes a model may scale to: enough to keep every core busy at its threads each."""
    return max(1, cores // threads)
