"""Shared fixtures: one in-process Supervisor on generated tiny models, and a real HTTP server subprocess.

Every test ends with no model process left that it started (the `no_orphans` fixture checks).
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

import falcon.testing
import psutil
from multiprocess import forkserver, resource_tracker
import pytest

from api.app import create_app
from model_procs.make_models import DONE_MARKER, model_dir
from supervisor.config import load_config
from supervisor.core import Supervisor
from tests.helpers import REPO, ServerProcess, alive, demo_config, descendants, wait_for

logging.basicConfig(level=logging.INFO)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long-running files first (a stable sort keeps the rest in order): `--dist loadfile` hands out files in
    collection order, so one worker starts the longest at once while the other works through the rest."""
    items.sort(key=lambda item: item.get_closest_marker("long_running") is None)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One model cache for the whole run: the tiny models are generated once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def supervisor(cache_dir):
    sup = Supervisor(load_config("demo"), cache_dir, stop_grace_s=2.0)
    sup.start()
    yield sup
    sup.close()


@pytest.fixture
def sup(supervisor):
    """The shared supervisor, with every model unloaded before and after the test."""
    supervisor.unload("all")
    yield supervisor
    supervisor.unload("all")


@pytest.fixture
def client(sup) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(sup))


def shared_helpers() -> set[int]:
    """The forkserver and resource tracker that the session's supervisor keeps for its whole life."""
    return {forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid} - {None}


@pytest.fixture(autouse=True)
def no_orphans(request):
    """Fail a test that leaves behind a process it started (the shared forkserver is expected to stay)."""
    before = descendants()
    yield
    if "supervisor" in request.fixturenames:
        request.getfixturevalue("supervisor").unload("all")

    def left_behind() -> list[int]:
        return [pid for pid in descendants() - before - shared_helpers() if alive(pid)]
    try:
        wait_for(lambda: not left_behind(), timeout=15)
    except AssertionError:
        raise AssertionError(f"processes left behind: {[psutil.Process(p).cmdline() for p in left_behind()]}") \
            from None


@pytest.fixture
def keep_forkserver(supervisor):
    """For tests that start supervisors of their own: the session's supervisor keeps this process's forkserver
    booted. Without it the last supervisor to close stops the forkserver and the next test boots it again (torch
    and funasr imported anew: ~10 s of CPU a test, which `-n 2` workers hit when a file runs first in one)."""
    return supervisor


class Supervisors:
    """Starts supervisors with any config, cache and spawner; `close_all` (also run after the test) stops them."""

    def __init__(self) -> None:
        self.started: list[Supervisor] = []

    def __call__(self, config, cache_dir: Path, **kwargs) -> Supervisor:
        sup = Supervisor(config, cache_dir, **kwargs)
        sup.start()
        self.started.append(sup)
        return sup

    def close_all(self) -> None:
        for sup in self.started:
            sup.close()


@pytest.fixture
def start_supervisor(keep_forkserver):
    supervisors = Supervisors()
    yield supervisors
    supervisors.close_all()


@pytest.fixture
def make_supervisor(cache_dir, start_supervisor):
    """Extra supervisors on the demo models with changed settings (they share the process's forkserver)."""
    return lambda server=None, **models: start_supervisor(demo_config(server, **models), cache_dir)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A folder that every xdist worker of this run shares (each worker's base temporary folder is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def generated_once(run_dir: Path, size: str, models: list[str]) -> Path:
    """Generated models that tests name as directories: `<root>/<model>-<size>`, made by one subprocess for the
    whole run (generating imports torch, which the test process, like the API process, must not). A worker that
    finds another generating waits for it, then reuses what it made."""
    root = run_dir / "generated"
    root.mkdir(exist_ok=True)
    with open(run_dir / f"generating-{size}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not all((model_dir(root, m, size) / DONE_MARKER).exists() for m in models):
            subprocess.run([sys.executable, "-m", "model_procs.make_models", "--size", size, "--models", *models,
                            "--out", str(root)], cwd=REPO, check=True, capture_output=True, timeout=600)
    return root


@pytest.fixture(scope="session")
def tiny_models(run_dir) -> Path:
    return generated_once(run_dir, "tiny", ["streaming_asr", "asr", "asr-bicif", "asr-sensevoice", "punctuation"])


@pytest.fixture
def bench_cache(tmp_path, tiny_models) -> Path:
    """A benchmark's cache whose generated models are the run's (a benchmark keeps what an earlier run generated)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "generated").symlink_to(tiny_models, target_is_directory=True)
    return cache


@pytest.fixture(scope="session")
def full_punctuation_dir(run_dir) -> Path:
    """A `full`-size CT-Punc directory (real shapes, ~280 MB), only for tests that ask."""
    return generated_once(run_dir, "full", ["punctuation"]) / "punctuation-full"


@pytest.fixture
def server(cache_dir):
    """A real `funasr-supervisor serve` on a loopback port; stopped (and checked) after the test."""
    srv = ServerProcess(cache_dir)
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0, srv.log_tail()
    srv.kill_everything()
