"""A server on a loopback port, driven by the reference's own client, and a real `funasr-supervisor serve`
subprocess ended by signals.

The flows share one server in the test's process (each test starts from every model unloaded); the signal tests
start and end real server processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from tests.helpers import (REPO, InProcessServer, alive, descendants, serving, speechlike_pcm,
                           unload_everything, wait_for, wav_bytes)
from tests.reference_client import ModelManager


@pytest.fixture(scope="module")
def one_server(cache_dir, supervisor):
    yield from serving(InProcessServer(cache_dir))


@pytest.fixture
def shared(one_server):
    """The module's server with every model unloaded, before and after the test."""
    unload_everything(one_server)
    yield one_server
    unload_everything(one_server)


def test_reference_client_flows(shared):
    server = shared
    manager = ModelManager(server.url)
    ready, message = manager.check_model_readiness()
    assert ready is False and "Unloaded models: streaming_asr, punctuation" == message

    assert manager.ensure_model_loaded("streaming_asr") is True
    wait_for(lambda: manager.check_model_readiness(["streaming_asr"])[0], timeout=60)
    assert manager.load_model("punctuation", async_load=False) is True
    assert manager.check_model_readiness() == (True, "All required models are loaded and ready")

    status = manager.get_model_status(detailed=True)
    pids = {m: status["available_models"][m]["pid"] for m in ("streaming_asr", "punctuation")}
    assert all(alive(pid) for pid in pids.values()) and len(set(pids.values())) == 2
    assert status["available_models"]["vad"]["pid"] is None  # never asked for

    assert manager.optimize_memory_usage(keep_models=["streaming_asr"]) is True
    after = manager.get_model_status()["available_models"]
    assert after["streaming_asr"]["loaded"] is True and after["punctuation"]["loaded"] is False
    assert not alive(pids["punctuation"])
    assert manager.ensure_model_loaded("not_a_model") is False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_sigterm_sigint_and_sighup_unload_everything_and_exit_zero(server, signum):
    requests.post(server.url + "/model/load", json={"model_type": "all", "async_load": False}, timeout=120)
    children = descendants(server.proc.pid)
    assert len(children) >= 3  # forkserver + two model processes
    assert server.stop(signum) == 0
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=5)
    log = server.log_path.read_text()
    assert "unloading every model" in log and "supervisor: closed" in log


def test_sigkill_takes_every_worker_and_the_forkserver_within_two_seconds(server):
    requests.post(server.url + "/model/load", json={"model_type": "all", "async_load": False}, timeout=120)
    workers = [info["pid"] for info in requests.get(server.url + "/model/info").json()["available_models"].values()]
    children = descendants(server.proc.pid)
    assert set(workers) <= children and len(children) >= 3
    processes = [psutil.Process(pid) for pid in children]
    killed_at = time.monotonic()
    server.proc.kill()
    wait_for(lambda: not any(alive(p.pid) for p in processes), timeout=2.0, interval=0.01)
    gone_s = time.monotonic() - killed_at
    assert gone_s <= 2.0
    print(f"orphans gone {gone_s * 1000:.0f} ms after the server's SIGKILL")


def test_load_is_sync_and_async_over_http(shared):
    server = shared
    sync = requests.post(server.url + "/model/load", data='{"model_type":"punctuation","async_load":false}',
                         timeout=120)  # form-encoded, like `curl -d`
    assert sync.status_code == 200 and sync.json()["status"] == "loaded"
    assert sync.json()["memory_usage_mb"] > 0 and sync.json()["load_time_ms"] > 0
    accepted = requests.post(server.url + "/model/load", json={"model_type": "streaming_asr"}, timeout=30)
    assert accepted.status_code == 202
    load_id = accepted.json()["load_id"]
    wait_for(lambda: requests.get(f"{server.url}/model/load/{load_id}").json()["job"]["status"] == "completed",
             timeout=60)
    unloaded = requests.delete(server.url + "/model/unload/streaming_asr", timeout=30).json()
    assert unloaded["memory_freed_mb"] > 0 and unloaded["models_remaining"] == ["punctuation"]


def test_streaming_a_wav_over_http_matches_transcribe(shared, tmp_path):
    """The README's streaming example (scripts/stream_wav.py) against a real server."""
    server = shared
    counted = {name: m["total_requests"]
               for name, m in requests.get(server.url + "/model/info").json()["available_models"].items()}
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(speechlike_pcm(5.0, seed=7)))
    run = subprocess.run([sys.executable, "scripts/stream_wav.py", str(path), "--url", server.url,
                          "--chunk-ms", "170"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    streamed = json.loads(run.stdout.strip().splitlines()[-1])
    whole = requests.post(server.url + "/asr/transcribe", data=path.read_bytes(),
                          headers={"Content-Type": "audio/wav"}, timeout=120)
    assert whole.status_code == 200 and whole.headers.get("X-Cold-Start") is None
    assert streamed["text"] == whole.json()["text"] and streamed["text"]
    assert streamed["punctuated_text"] == whole.json()["punctuated_text"]
    info = requests.get(server.url + "/model/info").json()["available_models"]
    assert info["streaming_asr"]["total_requests"] - counted["streaming_asr"] >= 33
    assert info["punctuation"]["total_requests"] - counted["punctuation"] == 2
