"""Faults injected into real model processes: kills, hangs (SIGSTOP), deadlines, memory pressure, bad frames."""

from __future__ import annotations

import os
import signal
import threading
import time

import falcon.testing
import psutil
import requests
import zmq

from api.app import create_app
from tests.helpers import ServerProcess, alive, speechlike_pcm, wait_for

PCM = {"Content-Type": "audio/L16; rate=16000"}


def load(sup, model_id: str) -> int:
    sup.await_load(sup.request_load(model_id))
    return sup.view(model_id).pid


def status(sup, model_id: str) -> str:
    return sup.view(model_id).status


def test_killed_worker_is_detected_at_once_and_a_required_model_restarts(make_supervisor):
    sup = make_supervisor(punctuation={"required": True})
    pid = load(sup, "punctuation")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: status(sup, "punctuation") != "loaded", timeout=1.0, interval=0.005)
    detected_s = time.monotonic() - killed_at
    assert detected_s < 1.0
    assert "killed by SIGKILL" in sup.view("punctuation").last_error
    assert "out-of-memory" not in sup.view("punctuation").last_error  # the OOM killer's count did not move
    wait_for(lambda: status(sup, "punctuation") == "loaded", timeout=15)
    assert sup.view("punctuation").pid != pid and sup.view("punctuation").restarts == 1
    print(f"detection time for a killed worker: {detected_s * 1000:.1f} ms")


def test_a_model_that_fails_to_load_is_not_retried(make_supervisor, tmp_path):
    sup = make_supervisor(punctuation={"required": True, "preload": True, "source": str(tmp_path / "none")})
    wait_for(lambda: status(sup, "punctuation") == "failed", timeout=30)
    time.sleep(2.5)
    assert status(sup, "punctuation") == "failed" and sup.view("punctuation").restarts == 0


def test_requests_in_flight_fail_fast_and_streams_are_lost_when_a_worker_dies(make_supervisor):
    sup = make_supervisor()
    client = falcon.testing.TestClient(create_app(sup))
    stream_id = client.simulate_post("/asr/streams", json={}).json["stream_id"]
    pid = sup.view("streaming_asr").pid
    os.kill(pid, signal.SIGSTOP)  # the next request is now in flight, unanswered
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        resp=client.simulate_post("/asr/transcribe", body=speechlike_pcm(1.0), headers=PCM)))
    thread.start()
    wait_for(lambda: sup.view("streaming_asr").metrics.in_flight == 1, timeout=5)
    os.kill(pid, signal.SIGKILL)
    thread.join(5)
    assert result["resp"].status_code == 502 and result["resp"].json["error_code"] == "MODEL_CRASHED"
    lost = client.simulate_post(f"/asr/streams/{stream_id}/audio", body=speechlike_pcm(0.6), headers=PCM)
    assert lost.status_code == 410 and lost.json["error_code"] == "STREAM_LOST"


def test_a_hung_worker_is_killed_when_its_heartbeats_stop(make_supervisor):
    sup = make_supervisor(server={"heartbeat_timeout_s": 2.0})
    pid = load(sup, "punctuation")
    time.sleep(3.0)
    assert status(sup, "punctuation") == "loaded"  # beating while idle: never killed for idling
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: "no heartbeat" in (sup.view("punctuation").last_error or ""), timeout=8)
    assert not alive(pid)
    wait_for(lambda: status(sup, "punctuation") == "loaded", timeout=15)  # the supervisor's kill: restarted


def test_a_request_past_its_deadline_times_out_and_the_stuck_worker_is_replaced(make_supervisor):
    sup = make_supervisor(server={"request_timeout_s": 1.0})
    client = falcon.testing.TestClient(create_app(sup))
    pid = load(sup, "punctuation")
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    resp = client.simulate_post("/punctuation", json={"text": "你好世界"})
    assert resp.status_code == 504 and resp.json["error_code"] == "INFERENCE_TIMEOUT"
    assert time.monotonic() - began < 3
    wait_for(lambda: "stuck on a request" in (sup.view("punctuation").last_error or ""), timeout=5)
    assert not alive(pid)
    wait_for(lambda: status(sup, "punctuation") == "loaded", timeout=15)
    assert client.simulate_post("/punctuation", json={"text": "你好世界"}).status_code == 200


def test_a_worker_past_its_memory_cap_is_killed_and_reported(make_supervisor):
    sup = make_supervisor(punctuation={"max_memory_mb": 1})
    pid = load(sup, "punctuation")
    wait_for(lambda: "exceeded max_memory_mb=1" in (sup.view("punctuation").last_error or ""), timeout=5)
    assert not alive(pid)


def measure_footprints(make_supervisor) -> None:
    sup = make_supervisor()
    load(sup, "punctuation")
    load(sup, "streaming_asr")
    sup.unload("all")


def test_memory_pressure_evicts_the_least_recently_used_idle_model(make_supervisor):
    measure_footprints(make_supervisor)
    sup = make_supervisor(server={"memory_budget_mb": 45, "memory_margin_mb": 0})
    load(sup, "punctuation")
    load(sup, "streaming_asr")  # ~28 MB does not fit beside ~24 MB in 45 MB: punctuation goes
    assert status(sup, "punctuation") == "unloaded" and status(sup, "streaming_asr") == "loaded"
    assert sup.view("punctuation").metrics.evictions == 1


def test_memory_pressure_refuses_when_nothing_may_be_evicted(make_supervisor):
    measure_footprints(make_supervisor)
    sup = make_supervisor(server={"memory_budget_mb": 45, "memory_margin_mb": 0})
    client = falcon.testing.TestClient(create_app(sup))
    client.simulate_post("/asr/streams", json={})  # an open stream pins streaming_asr
    resp = client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
    assert resp.status_code == 507 and resp.json["error_code"] == "INSUFFICIENT_MEMORY"
    assert resp.json["needed_mb"] > resp.json["free_mb"] and "MB free" in resp.json["details"]
    assert status(sup, "streaming_asr") == "loaded" and status(sup, "punctuation") == "unloaded"


def test_undecodable_zeromq_frames_are_dropped_and_the_loop_lives_on(make_supervisor):
    sup = make_supervisor()
    context = zmq.Context()
    intruder = context.socket(zmq.DEALER)
    intruder.connect(sup.loop.endpoint)
    for frame in (b"garbage", b"\x81\xa3tag\xa5ready", b"", b"\xc1" * 1000):
        intruder.send(frame)
    intruder.send_multipart([b"two", b"frames"])
    time.sleep(0.3)
    intruder.close(linger=0)
    context.term()
    assert sup.is_alive()
    load(sup, "punctuation")
    assert status(sup, "punctuation") == "loaded"


def test_ipc_directory_is_private_and_removed_at_close(make_supervisor):
    sup = make_supervisor()
    directory = os.path.dirname(sup.loop.endpoint.removeprefix("ipc://"))
    assert os.stat(directory).st_mode & 0o777 == 0o700
    sup.close()
    assert not os.path.exists(directory)


def test_a_paused_supervisor_does_not_kill_its_healthy_models(cache_dir, tmp_path):
    """SIGSTOP/SIGCONT of the server (a VM stall does the same): heartbeats queued while it was paused count,
    and silence is judged only from when it listens again."""
    config = tmp_path / "models.toml"
    config.write_text('[models.streaming_asr]\nsource = "generated:tiny"\n[models.punctuation]\n'
                      'source = "generated:tiny"\n[server]\nheartbeat_timeout_s = 2.0\n')
    srv = ServerProcess(cache_dir, models=str(config))
    try:
        requests.post(f"{srv.url}/model/load", json={"model_type": "all", "async_load": False}).raise_for_status()
        stream_id = requests.post(f"{srv.url}/asr/streams", json={}).json()["stream_id"]
        before = {m: v["pid"] for m, v in requests.get(f"{srv.url}/model/info").json()["available_models"].items()}
        os.kill(srv.proc.pid, signal.SIGSTOP)
        time.sleep(5.0)  # more than twice heartbeat_timeout_s
        os.kill(srv.proc.pid, signal.SIGCONT)
        time.sleep(3.0)  # past another heartbeat_timeout_s after resuming
        after = requests.get(f"{srv.url}/model/info").json()["available_models"]
        assert {m: v["pid"] for m, v in after.items()} == before
        assert all(v["status"] == "loaded" and v["last_error"] is None for v in after.values())
        fed = requests.post(f"{srv.url}/asr/streams/{stream_id}/audio", data=speechlike_pcm(0.6), headers=PCM)
        assert fed.status_code == 200
    finally:
        if srv.proc.poll() is None:
            assert srv.stop() == 0
        srv.kill_everything()


def test_a_dead_forkserver_is_a_dependency_not_the_owner(cache_dir):
    """SIGKILL the forkserver: loaded models keep serving and are reported truthfully, the next spawn gets a
    new forkserver, and shutdown completes."""
    srv = ServerProcess(cache_dir)
    try:
        requests.post(f"{srv.url}/model/load", json={"model_type": "all", "async_load": False}).raise_for_status()
        before = {m: v["pid"] for m, v in requests.get(f"{srv.url}/model/info").json()["available_models"].items()}
        forkservers = [p for p in psutil.Process(srv.proc.pid).children()
                       if "multiprocess.forkserver" in " ".join(p.cmdline())]
        assert len(forkservers) == 1
        forkservers[0].kill()
        wait_for(lambda: not alive(forkservers[0].pid), timeout=5)  # a zombie until its parent reaps it
        time.sleep(1.0)
        info = requests.get(f"{srv.url}/model/info").json()["available_models"]
        assert {m: v["pid"] for m, v in info.items()} == before and all(alive(pid) for pid in before.values())
        assert all(v["status"] == "loaded" for v in info.values())
        assert requests.post(f"{srv.url}/punctuation", json={"text": "你好"}).status_code == 200
        reloaded = requests.post(f"{srv.url}/model/load", json={"model_type": "punctuation", "async_load": False,
                                                                 "force_reload": True})
        assert reloaded.status_code == 200, reloaded.text
        assert requests.get(f"{srv.url}/model/info").json()["available_models"]["punctuation"]["pid"] not in before
        assert srv.stop(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in before.values()), timeout=10)
    finally:
        srv.kill_everything()
