"""A memory limit on the server's cgroup is the memory it has: reported in `system_info`, used by admission (page
cache the kernel can reclaim not counted as used), and an OOM kill of a model process is named as one.

The rules on fake v1 and v2 cgroup trees first; then a real server started in a v1 or v2 cgroup that this test
creates and limits, where the machine lets it (root, a writable memory controller)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import requests

from supervisor import cgroup
from tests.helpers import ServerProcess, wait_for

GB = 1024 ** 3
MB = 1024 ** 2


def write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_v1_limit_is_the_lowest_on_the_path_and_reclaimable_cache_is_not_used(tmp_path):
    memory = tmp_path / "memory"
    write(memory, memory_limit_in_bytes="9223372036854771712\n")  # the root: no limit
    write(memory / "pod", memory_limit_in_bytes=f"{2 * GB}\n")
    write(memory / "pod" / "server", memory_limit_in_bytes="9223372036854771712\n",
          memory_usage_in_bytes=f"{900 * MB}\n", memory_oom_control="oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    (memory / "pod" / "server" / "memory.stat").write_text(f"cache {500 * MB}\ntotal_inactive_file {300 * MB}\n")
    (tmp_path / "self").write_text("12:memory:/pod/server\n4:cpu,cpuacct:/\n0::/\n")
    found = cgroup.own_memory_cgroup(tmp_path / "self", tmp_path)
    assert (found.version, found.path) == (1, memory / "pod" / "server")
    assert found.limit_bytes() == 2 * GB
    assert found.working_set_bytes() == 600 * MB
    assert found.oom_kills() == 3


def test_v2_reads_memory_max_current_stat_and_events(tmp_path):
    write(tmp_path, cgroup_controllers="cpu memory\n")
    write(tmp_path / "box", memory_max="max\n")
    write(tmp_path / "box" / "srv", memory_max=f"{GB}\n", memory_current=f"{700 * MB}\n",
          memory_events="low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (tmp_path / "box" / "srv" / "memory.stat").write_text(f"anon {400 * MB}\ninactive_file {200 * MB}\n")
    (tmp_path / "self").write_text("0::/box/srv\n")
    found = cgroup.own_memory_cgroup(tmp_path / "self", tmp_path)
    assert (found.version, found.limit_bytes(), found.working_set_bytes(), found.oom_kills()) == \
        (2, GB, 500 * MB, 1)


def test_a_container_whose_cgroup_path_is_not_mounted_reads_the_cgroup_mounted_at_the_root(tmp_path):
    """podman on cgroup v1: /proc/self/cgroup names the host's path; the container's own cgroup is the mount."""
    write(tmp_path / "memory", memory_limit_in_bytes=f"{GB}\n", memory_usage_in_bytes=f"{100 * MB}\n")
    (tmp_path / "self").write_text("4:memory:/libpod_parent/libpod-489e8ac9\n")
    found = cgroup.own_memory_cgroup(tmp_path / "self", tmp_path)
    assert (found.path, found.limit_bytes(), found.working_set_bytes()) == (tmp_path / "memory", GB, 100 * MB)


def test_no_cgroup_or_no_limit_is_none(tmp_path):
    (tmp_path / "self").write_text("0::/\n")
    assert cgroup.own_memory_cgroup(tmp_path / "self", tmp_path) is None  # no controllers file: not mounted
    write(tmp_path, cgroup_controllers="memory\n", memory_max="max\n")
    assert cgroup.own_memory_cgroup(tmp_path / "self", tmp_path).limit_bytes() is None


def own_cgroup_folder() -> Path | None:
    """A fresh child of this process's memory cgroup, where one can be made and limited."""
    found = cgroup.own_memory_cgroup()
    if found is None or os.geteuid() != 0:
        return None
    child = found.path / f"funasr-test-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        if found.version == 2 and not (child / "memory.max").exists():
            child.rmdir()
            return None  # the memory controller is not enabled for children here
    except OSError:
        return None
    return child


@pytest.fixture
def limited_cgroup():
    folder = own_cgroup_folder()
    if folder is None:
        pytest.skip("no memory cgroup can be created here (needs root and a writable memory controller)")
    yield folder
    wait_for(lambda: not (folder / "cgroup.procs").read_text().strip(), timeout=30)
    folder.rmdir()


def set_limit(folder: Path, limit: int) -> None:
    """The memory limit, and no swap to escape it by (v1: memory+swap equal to memory; raised first, lowered
    last, since the kernel keeps memory <= memory+swap)."""
    if (folder / "memory.max").exists():
        (folder / "memory.max").write_text(str(limit))
        if (folder / "memory.swap.max").exists():
            (folder / "memory.swap.max").write_text("0")
        return
    files = [folder / "memory.limit_in_bytes", folder / "memory.memsw.limit_in_bytes"]
    files = [f for f in files if f.exists()]
    raising = cgroup.read_int(files[0]) < limit
    for path in reversed(files) if raising else files:
        path.write_text(str(limit))


def working_set(folder: Path) -> int:
    v2 = (folder / "memory.max").exists()
    return cgroup.MemoryCgroup(folder, 2 if v2 else 1, folder.parent).working_set_bytes()


def test_a_server_in_a_limited_cgroup_reports_its_limit_refuses_what_does_not_fit_and_names_an_oom_kill(
        limited_cgroup, cache_dir, full_punctuation_dir, tmp_path):
    """The limit is set once the server has booted (its forkserver's torch and funasr are what it holds):
    600 MB more. A model estimated at 1200 MB is refused before anything starts; a full-size CT-Punc loaded
    by funasr's copying loader (estimated 400 MB, but ~3 copies of its 280 MB weights while loading) is killed by
    the kernel, and the server says so and lives on; with the limit raised, a small model loads and serves."""
    config = tmp_path / "models.toml"
    config.write_text(f'[models.punctuation]\nsource = "{full_punctuation_dir}"\nloader = "automodel"\n'
                      '[models.streaming_asr]\nsource = "generated:full"\n'
                      '[models.small]\nkind = "punctuation"\nsource = "generated:tiny"\n'
                      "[server]\nmemory_margin_mb = 0\nevict_idle = false\n")
    procs = limited_cgroup / "cgroup.procs"
    srv = ServerProcess(cache_dir, models=str(config), preexec=lambda: procs.write_text(str(os.getpid())))
    try:
        booted = wait_for(lambda: working_set(limited_cgroup) if "forkserver: ready" in srv.log_path.read_text()
                          else None, timeout=120)
        limit = booted + 600 * MB
        set_limit(limited_cgroup, limit)

        system = requests.get(srv.url + "/model/info", timeout=10).json()["system_info"]
        assert system["memory_limit"] in ("cgroup v1", "cgroup v2")
        assert system["total_memory_gb"] == round(limit / GB, 2)
        assert 0 < system["available_memory_gb"] <= system["total_memory_gb"]

        refused = requests.post(srv.url + "/model/load", json={"model_type": "streaming_asr"}, timeout=10)
        assert refused.status_code == 507 and refused.json()["error_code"] == "INSUFFICIENT_MEMORY", refused.text

        killed = requests.post(srv.url + "/model/load", json={"model_type": "punctuation", "async_load": False},
                               timeout=180)
        assert killed.status_code >= 500, killed.text
        view = requests.get(srv.url + "/model/info", timeout=10).json()["available_models"]["punctuation"]
        assert view["status"] == "failed" and "out-of-memory killer" in view["last_error"], view

        assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200  # the server lives on
        set_limit(limited_cgroup, limit + 600 * MB)  # an operator raises the limit: read live, not cached
        system = requests.get(srv.url + "/model/info", timeout=10).json()["system_info"]
        assert system["total_memory_gb"] == round((limit + 600 * MB) / GB, 2)
        small = requests.post(srv.url + "/model/load", json={"model_type": "small", "async_load": False}, timeout=60)
        assert small.status_code == 200, small.text
        assert requests.post(srv.url + "/punctuation?model=small", json={"text": "你好"}, timeout=30).ok
        assert srv.stop() == 0
    finally:
        srv.kill_everything()
