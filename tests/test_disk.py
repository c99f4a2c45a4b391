"""The model cache under real disk faults: a damaged cached checkpoint, a full filesystem, an abandoned
generation. Each fault is made for real (a truncated file, a 512 KB tmpfs, a staging directory of a dead pid)."""

from __future__ import annotations

from flows.service import Flows

import shutil
import subprocess
import sys
import time

import pytest
import requests

from wire.errors import SupervisorError
from tests.helpers import REPO, ServerProcess, demo_config, wait_for


@pytest.fixture
def own_cache(start_supervisor):
    """Supervisors on a cache directory of their own (the session's shared cache must stay intact)."""
    return lambda cache_dir, **models: start_supervisor(demo_config(None, **models), cache_dir)


def generate(out) -> None:
    """In a subprocess: generating imports torch, which the test process (like the API process) must not."""
    subprocess.run([sys.executable, "-m", "model_procs.make_models", "--size", "tiny", "--models", "punctuation",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True)


@pytest.fixture(scope="module")
def generated(tiny_models, tmp_path_factory):
    """A copy of the session's generated tiny punctuation model, for this module to damage."""
    root = tmp_path_factory.mktemp("generated")
    shutil.copytree(tiny_models / "punctuation-tiny", root / "punctuation-tiny")
    return root


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def test_a_damaged_generated_model_is_regenerated_once(own_cache, tmp_path):
    sup = own_cache(tmp_path / "cache")
    sup.await_load(sup.request_load("punctuation"))
    model_pt = tmp_path / "cache" / "generated" / "punctuation-tiny" / "model.pt"
    size = model_pt.stat().st_size
    sup.unload("punctuation")
    truncate(model_pt)
    sup.await_load(sup.request_load("punctuation"))
    assert sup.view("punctuation").status == "loaded" and model_pt.stat().st_size == size
    assert Flows(sup).punctuate("你好").text


def test_a_damaged_model_directory_fails_naming_the_file(own_cache, tmp_path, generated):
    source = tmp_path / "punctuation-model"
    shutil.copytree(generated / "punctuation-tiny", source)
    truncate(source / "model.pt")
    sup = own_cache(tmp_path / "cache", punctuation={"source": str(source)})
    with pytest.raises(SupervisorError) as failed:
        sup.await_load(sup.request_load("punctuation"))
    assert failed.value.code == "LOAD_FAILED" and str(source / "model.pt") in failed.value.message
    assert "damaged" in failed.value.message and sup.view("punctuation").status == "failed"


@pytest.fixture
def tiny_filesystem(tmp_path):
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_cache_fails_the_load_naming_the_path_and_leaves_no_staging(own_cache, tiny_filesystem):
    sup = own_cache(tiny_filesystem)
    with pytest.raises(SupervisorError) as failed:
        sup.await_load(sup.request_load("streaming_asr"))
    assert failed.value.code == "LOAD_FAILED" and "no space left" in failed.value.message
    assert str(tiny_filesystem) in failed.value.message and "--cache-dir" in failed.value.details
    assert sup.view("streaming_asr").status == "failed"
    wait_for(lambda: not list((tiny_filesystem / "generated").glob(".*")), timeout=5)


def abandoned_generation(cache_dir):
    """What a generation killed midway leaves: a staging directory named after its (now dead) process."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = cache_dir / "generated" / f".punctuation-tiny-{dead.pid}-x1y2"
    abandoned.mkdir(parents=True)
    (abandoned / "model.pt").write_bytes(b"partial")
    return abandoned


def test_a_generation_abandoned_by_a_dead_process_is_cleaned_up(tmp_path, own_cache, generated):
    shutil.copytree(generated, tmp_path / "generated")
    abandoned = abandoned_generation(tmp_path)
    generate(tmp_path / "generated")  # the next use of the generated models sweeps it
    assert not abandoned.exists() and (tmp_path / "generated" / "punctuation-tiny" / "model.pt").exists()
    abandoned = abandoned_generation(tmp_path)
    own_cache(tmp_path).close()  # and so does the supervisor when it stops
    assert not abandoned.exists()


def test_a_read_only_cache_fails_the_load_naming_the_path(own_cache, tiny_filesystem):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], check=True)
    sup = own_cache(tiny_filesystem)
    with pytest.raises(SupervisorError) as failed:
        sup.await_load(sup.request_load("punctuation"))
    assert failed.value.code == "LOAD_FAILED" and "read-only filesystem" in failed.value.message
    assert str(tiny_filesystem) in failed.value.message


def test_sigterm_during_a_generation_exits_in_time_and_leaves_no_copy(tmp_path):
    """The slowest load state: a full-size model being generated into the cache (hundreds of MB)."""
    config = tmp_path / "models.toml"
    config.write_text('[models.punctuation]\nsource = "generated:full"\n[server]\ndrain_timeout_s = 2\n')
    (tmp_path / "cache").mkdir()
    srv = ServerProcess(tmp_path / "cache", models=str(config))
    try:
        load_id = requests.post(f"{srv.url}/model/load", json={"model_type": "punctuation"}).json()["load_id"]
        staging = lambda: list((tmp_path / "cache" / "generated").glob(".punctuation-full-*"))  # noqa: E731
        wait_for(staging, timeout=60)
        assert requests.get(f"{srv.url}/model/load/{load_id}").json()["job"]["status"] == "loading"
        began = time.monotonic()
        assert srv.stop(timeout=30) == 0
        assert time.monotonic() - began < 2 + 3 * 2.0 + 5  # drain_timeout_s + the stop grace, and a margin
        assert not staging()
    finally:
        srv.kill_everything()
