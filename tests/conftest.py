"""Shared fixtures: one in-process Supervisor on generated tiny models, and a real HTTP server subprocess.

Every test ends with no model process left that it started (the `no_orphans` fixture checks).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import falcon.testing
import psutil
from multiprocess import forkserver, resource_tracker
import pytest

from api.app import create_app
from supervisor.config import load_config
from supervisor.core import Supervisor
from tests.helpers import REPO, ServerProcess, alive, demo_config, descendants, wait_for

logging.basicConfig(level=logging.INFO)


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
def start_supervisor():
    supervisors = Supervisors()
    yield supervisors
    supervisors.close_all()


@pytest.fixture
def make_supervisor(cache_dir, start_supervisor):
    """Extra supervisors on the demo models with changed settings (they share the process's forkserver)."""
    return lambda server=None, **models: start_supervisor(demo_config(server, **models), cache_dir)


@pytest.fixture(scope="session")
def full_punctuation_dir(tmp_path_factory) -> Path:
    """A `full`-size CT-Punc directory (real shapes, ~280 MB), generated once, only for tests that ask."""
    out = tmp_path_factory.mktemp("full-models")
    subprocess.run([sys.executable, "-m", "model_procs.make_models", "--size", "full", "--models", "punctuation",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True)
    return out / "punctuation-full"


@pytest.fixture
def server(cache_dir):
    """A real `funasr-supervisor serve` on a loopback port; stopped (and checked) after the test."""
    srv = ServerProcess(cache_dir)
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0, srv.log_path.read_text()[-2000:]
    srv.kill_everything()
