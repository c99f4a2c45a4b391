"""GET|POST /model/info against the reference's response shape, through Falcon, on real model processes."""

from __future__ import annotations

from datetime import datetime

import psutil

from tests.helpers import alive, wait_for

REFERENCE_MODEL_FIELDS = {
    "model_id": str, "display_name": str, "description": str, "version": str, "provider": str,
    "language": str, "capabilities": list, "loaded": bool, "memory_usage_mb": (int, float),
    "load_time_ms": (int, float, type(None)), "last_used": (str, type(None)), "total_requests": int,
    "success_rate": (int, float),
}
OUR_MODEL_FIELDS = {"status": str, "loading": bool, "pid": (int, type(None)), "restarts": int,
                    "last_error": (str, type(None))}
SYSTEM_FIELDS = {"total_memory_gb": float, "available_memory_gb": float, "cpu_cores": int,
                 "python_version": str, "framework": str, "uptime_hours": (int, float)}
CACHE_FIELDS = {"cache_enabled": bool, "cache_directory": str, "cache_size_mb": (int, float),
                "cache_hit_rate": (int, float)}


def assert_fields(obj: dict, fields: dict) -> None:
    for name, kind in fields.items():
        assert name in obj, f"missing field {name}"
        assert isinstance(obj[name], kind), f"{name}={obj[name]!r} is not {kind}"


def test_info_has_every_reference_field(client):
    body = client.simulate_get("/model/info").json
    assert body["success"] is True
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert set(body["available_models"]) == {"streaming_asr", "punctuation", "vad"}
    for model_id, model in body["available_models"].items():
        assert model["model_id"] == model_id
        assert_fields(model, REFERENCE_MODEL_FIELDS | OUR_MODEL_FIELDS)
        assert model["loaded"] is False and model["status"] == "unloaded" and model["pid"] is None
    assert_fields(body["system_info"], SYSTEM_FIELDS)
    assert "Falcon" in body["system_info"]["framework"]
    assert_fields(body["model_cache"], CACHE_FIELDS)


def test_memory_usage_is_the_worker_rss_and_unload_returns_memory(client):
    loaded = client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
    assert loaded.status_code == 200, loaded.json
    model = client.simulate_get("/model/info").json["available_models"]["punctuation"]
    assert model["loaded"] is True and model["status"] == "loaded"
    rss_mb = psutil.Process(model["pid"]).memory_info().rss / (1024 * 1024)
    assert abs(model["memory_usage_mb"] - rss_mb) <= 0.05 * rss_mb

    unloaded = client.simulate_delete("/model/unload/punctuation").json
    assert unloaded["success"] is True and unloaded["memory_freed_mb"] > 0
    assert unloaded["models_remaining"] == []
    assert not alive(model["pid"])
    after = client.simulate_get("/model/info").json["available_models"]["punctuation"]
    assert after["loaded"] is False and after["pid"] is None and after["memory_usage_mb"] == 0


def test_detailed_info_adds_memory_breakdown_and_source(client):
    client.simulate_post("/model/load", json={"model_type": "streaming_asr", "async_load": False})
    body = client.simulate_post("/model/info", json={"detailed": True, "include_metrics": True}).json
    asr = body["available_models"]["streaming_asr"]
    details = asr["details"]
    assert details["source"] == "generated:tiny"
    assert details["resolved_source"].endswith("streaming_asr-tiny")
    assert details["device"] == "cpu" and details["threads"] == 1
    assert 0 < details["memory_unique_mb"] < asr["memory_usage_mb"]
    phases = details["load_phases_ms"]
    assert phases["total_ms"] >= phases["weights_ms"] > 0
    assert asr["metrics"]["loads"] >= 1
    cache_size = lambda: client.simulate_get("/model/info").json["model_cache"]["cache_size_mb"]  # noqa: E731
    assert wait_for(lambda: cache_size() > 0, timeout=10)  # measured off the request path after each load
    assert "details" not in body["available_models"]["punctuation"] or \
        body["available_models"]["punctuation"]["details"]["memory_unique_mb"] is None
