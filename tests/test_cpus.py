"""`threads`/`max_replicas = "auto"`: the cores a server may use are its cgroup's CPU quota (a container's limit)
or its affinity, whichever is lower; fake cgroup trees stand in for a container's."""

from __future__ import annotations

import os

import msgspec
import pytest

from supervisor.config import with_cores
from supervisor.cpus import auto_replicas, auto_threads, usable_cores
from wire.model_config import ModelConfig

AFFINITY = len(os.sched_getaffinity(0))


def tree(tmp_path, version: int, quota: str, where: str = "pod/app"):
    """A cgroup hierarchy whose process sits in `where`, with a CPU quota on its parent."""
    proc = tmp_path / "cgroup"
    root = tmp_path / "fs"
    if version == 2:
        (root / where).mkdir(parents=True)
        (root / "cgroup.controllers").write_text("cpu memory\n")
        (root / where).parent.joinpath("cpu.max").write_text(quota + "\n")
        (root / where / "cpu.max").write_text("max 100000\n")
        proc.write_text(f"0::/{where}\n")
    else:
        folder = root / "cpu" / where
        folder.mkdir(parents=True)
        quota_us, period_us = quota.split()
        folder.parent.joinpath("cpu.cfs_quota_us").write_text(quota_us + "\n")
        folder.parent.joinpath("cpu.cfs_period_us").write_text(period_us + "\n")
        (folder / "cpu.cfs_quota_us").write_text("-1\n")
        (folder / "cpu.cfs_period_us").write_text("100000\n")
        proc.write_text(f"4:memory:/{where}\n3:cpu:/{where}\n")
    return proc, root


@pytest.mark.parametrize("version", [1, 2])
def test_a_cpu_quota_on_the_cgroup_path_bounds_the_usable_cores(tmp_path, version):
    assert usable_cores(*tree(tmp_path, version, "100000 100000")) == 1           # one core's quota
    assert usable_cores(*tree(tmp_path / "half", version, "50000 100000")) == 1   # never below one
    assert usable_cores(*tree(tmp_path / "big", version, "6400000 100000")) == AFFINITY  # affinity is lower


def test_no_quota_means_the_affinity(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/\n")
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(proc, tmp_path) == AFFINITY
    assert usable_cores(tmp_path / "missing", tmp_path) == AFFINITY


def test_auto_gives_a_small_box_single_threaded_replicas_and_a_large_one_threaded_ones():
    assert (auto_threads(2), auto_replicas(2, auto_threads(2))) == (1, 2)
    assert (auto_threads(32), auto_replicas(32, auto_threads(32))) == (8, 4)
    auto = msgspec.json.decode(b'{"threads": "auto", "max_replicas": "auto"}', type=ModelConfig)
    assert (with_cores(auto, 2).threads, with_cores(auto, 2).max_replicas) == (1, 2)
    assert with_cores(msgspec.structs.replace(auto, threads=4), 16).max_replicas == 4
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"threads": "many"}', type=ModelConfig)
