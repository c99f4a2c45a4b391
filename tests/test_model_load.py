"""POST /model/load, GET /model/load/{id}, DELETE /model/unload/{model_type}: jobs, joins, reloads, errors."""

from __future__ import annotations

import threading

import pytest

from supervisor.config import load_config, with_models
from wire.model_config import ModelConfig
from supervisor.core import Supervisor
from wire.errors import SupervisorError
from tests.helpers import alive, wait_for


def job_status(client, load_id: str) -> str:
    resp = client.simulate_get(f"/model/load/{load_id}")
    assert resp.status_code == 200, resp.json
    return resp.json["job"]["status"]


def test_async_load_reports_its_job_until_completed(client):
    resp = client.simulate_post("/model/load", json={"model_type": "punctuation"})
    assert resp.status_code == 202
    body = resp.json
    assert body["async"] is True and body["current_status"] == "loading" and body["load_id"].startswith("load_")
    assert body["estimated_load_time"] > 0
    wait_for(lambda: job_status(client, body["load_id"]) == "completed", timeout=60)
    job = client.simulate_get(f"/model/load/{body['load_id']}").json["job"]
    assert job["model_type"] == "punctuation" and job["finished_at"] and job["error"] is None
    again = client.simulate_post("/model/load", json={"model_type": "punctuation"})
    assert again.status_code == 200 and again.json["current_status"] == "loaded"


def test_concurrent_loads_of_one_model_share_one_process(client, sup):
    loads_before = sup.view("streaming_asr").metrics.loads  # the supervisor is shared: count from here
    results = []

    def load() -> None:
        results.append(client.simulate_post("/model/load", json={"model_type": "streaming_asr"}).json)
    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["load_id"] for r in results}) == 1
    wait_for(lambda: sup.view("streaming_asr").status == "loaded", timeout=60)
    assert sup.view("streaming_asr").metrics.loads == loads_before + 1  # four requests, one process started
    assert len(sup.view("streaming_asr").replicas) == 1


def test_force_reload_starts_a_new_process_and_stops_the_old(client):
    first = client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
    assert first.status_code == 200 and first.json["status"] == "loaded"
    old_pid = client.simulate_get("/model/info").json["available_models"]["punctuation"]["pid"]
    second = client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False,
                                                       "force_reload": True})
    assert second.status_code == 200
    new_pid = client.simulate_get("/model/info").json["available_models"]["punctuation"]["pid"]
    assert new_pid != old_pid and alive(new_pid)
    wait_for(lambda: not alive(old_pid), timeout=10)


def test_load_all_loads_every_model(client):
    resp = client.simulate_post("/model/load", json={"model_type": "all", "async_load": False})
    assert resp.status_code == 200, resp.json
    assert resp.json["model_type"] == "all" and set(resp.json["models"]) == {"streaming_asr", "punctuation", "vad"}
    models = client.simulate_get("/model/info").json["available_models"]
    assert all(m["loaded"] for m in models.values())
    unloaded = client.simulate_delete("/model/unload/all").json
    assert unloaded["models_remaining"] == [] and unloaded["memory_freed_mb"] > 0


def test_timeout_on_a_full_size_load_kills_its_process(cache_dir, full_punctuation_dir, supervisor):
    config = with_models(load_config("demo"), punctuation=ModelConfig(source=str(full_punctuation_dir)))
    other = Supervisor(config, cache_dir)
    other.start()
    try:
        with pytest.raises(SupervisorError) as refused:
            other.await_load(other.request_load("punctuation", timeout_s=0.001))
        assert refused.value.code == "LOAD_TIMEOUT"
        assert other.view("punctuation").status == "failed"
        assert "timeout" in other.view("punctuation").last_error
        wait_for(lambda: not other.view("punctuation").replicas, timeout=10)  # its process is gone
    finally:
        other.close()


def test_missing_source_fails_the_load_and_the_server_keeps_serving(cache_dir, tmp_path, supervisor):
    config = with_models(load_config("demo"), punctuation=ModelConfig(source=str(tmp_path / "no-such-model")))
    other = Supervisor(config, cache_dir)
    other.start()
    try:
        from api.app import create_app
        import falcon.testing
        client = falcon.testing.TestClient(create_app(other))
        resp = client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
        assert resp.status_code == 500 and resp.json["error_code"] == "LOAD_FAILED"
        assert "does not exist" in resp.json["error"]
        assert "source" in resp.json["details"]
        info = client.simulate_get("/model/info").json["available_models"]["punctuation"]
        assert info["status"] == "failed" and "does not exist" in info["last_error"]
        ok = client.simulate_post("/model/load", json={"model_type": "streaming_asr", "async_load": False})
        assert ok.status_code == 200 and ok.json["status"] == "loaded"
    finally:
        other.close()


def test_a_device_the_machine_lacks_is_a_load_failed_that_names_it(cache_dir, supervisor):
    """funasr itself would run a `cuda` model on the CPU without a word; a device that is not a device at all is
    refused with the config."""
    import falcon.testing

    from api.app import create_app

    config = with_models(load_config("demo"), punctuation=ModelConfig(source="generated:tiny", device="cuda:63"))
    other = Supervisor(config, cache_dir)
    other.start()
    try:
        client = falcon.testing.TestClient(create_app(other))
        resp = client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
        assert resp.status_code == 500 and resp.json["error_code"] == "LOAD_FAILED", resp.json
        assert "device 'cuda:63' does not exist on this machine" in resp.json["error"]
        assert "set device to cpu" in resp.json["details"]
        bad = client.simulate_put("/model/registry/punc-tpu", body='{"kind": "punctuation", "device": "tpu"}')
        assert bad.status_code == 400 and "device" in bad.json["details"]
    finally:
        other.close()
