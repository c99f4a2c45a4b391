"""The model cache under real disk faults: a damaged cached checkpoint, a full filesystem, an abandoned
generation. Each fault is made for real (a truncated file, a 512 KB tmpfs, a staging directory of a dead pid)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from scripts.make_models import ensure_model
from supervisor.errors import SupervisorError
from tests.helpers import demo_config, wait_for


@pytest.fixture
def own_cache(start_supervisor):
    """Supervisors on a cache directory of their own (the session's shared cache must stay intact)."""
    return lambda cache_dir, **models: start_supervisor(demo_config(None, **models), cache_dir)


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
    assert sup.punctuate("你好").text


def test_a_damaged_model_directory_fails_naming_the_file(own_cache, tmp_path):
    source = tmp_path / "punctuation-model"
    shutil.copytree(ensure_model(tmp_path / "gen", "punctuation", "tiny"), source)
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


def test_a_generation_abandoned_by_a_dead_process_is_cleaned_up(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = tmp_path / "generated" / f".punctuation-tiny-{dead.pid}-x1y2"
    abandoned.mkdir(parents=True)
    (abandoned / "model.pt").write_bytes(b"partial")
    ensure_model(tmp_path / "generated", "punctuation", "tiny")
    assert not abandoned.exists() and (tmp_path / "generated" / "punctuation-tiny" / "model.pt").exists()
