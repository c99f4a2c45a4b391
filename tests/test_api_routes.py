"""The HTTP layer against a hand-written fake of the facade (tests/fake_facade.py): parsing, the error envelope,
status codes and the shapes of the answers, in milliseconds. Lifecycle behaviour is tested where it lives."""

from __future__ import annotations

import falcon.testing
import msgspec
import pytest

from api.app import create_app
from api.common.errors import HTTP_STATUS
from tests.fake_facade import FakeSupervisor
from wire.errors import SupervisorError


@pytest.fixture
def fake() -> FakeSupervisor:
    return FakeSupervisor()


@pytest.fixture
def client(fake) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(fake))


def test_unknown_model_is_404_with_available_models(client):
    for resp in (client.simulate_post("/model/load", json={"model_type": "whisper"}),
                 client.simulate_delete("/model/unload/whisper")):
        assert resp.status_code == 404
        assert resp.json["error_code"] == "MODEL_NOT_FOUND"
        assert resp.json["available_models"] == ["streaming_asr", "punctuation", "vad"]
        assert "whisper" in resp.json["details"]


@pytest.mark.parametrize("body", [b"{not json", b'{"model_type": 3}', b"{}", b'{"force_reload": true}',
                                  b'{"model_type": "punctuation", "timeout": 0}',
                                  b'{"model_type": "punctuation", "timeout": 1e308}',
                                  b'{"model_type": "punctuation", "async_load": "no"}', b"[1, 2]"])
def test_bad_load_bodies_are_400(client, body):
    resp = client.simulate_post("/model/load", body=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json["error_code"] == "INVALID_REQUEST" and resp.json["success"] is False


def test_unloading_a_model_that_is_not_loaded_is_fine(client):
    resp = client.simulate_delete("/model/unload/punctuation")
    assert resp.status_code == 200 and resp.json["memory_freed_mb"] == 0


def test_unknown_load_id_is_404(client):
    resp = client.simulate_get("/model/load/load_0")
    assert resp.status_code == 404 and resp.json["error_code"] == "LOAD_NOT_FOUND"


def test_info_post_rejects_bad_bodies(client):
    for body, fragment in ((b"{nope", "Malformed JSON"), (b'{"detailed": "yes"}', "Invalid request body"),
                           (b'{"detaled": true}', "Invalid request body")):
        resp = client.simulate_post("/model/info", body=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400
        assert resp.json["error_code"] == "INVALID_REQUEST" and resp.json["error"] == fragment
        assert resp.json["success"] is False and resp.json["details"]


def test_unknown_route_and_method_use_the_envelope(client):
    missing = client.simulate_get("/model/nothing")
    assert missing.status_code == 404 and missing.json["error_code"] == "ROUTE_NOT_FOUND"
    wrong = client.simulate_put("/model/info")
    assert wrong.status_code == 405 and wrong.json["error_code"] == "METHOD_NOT_ALLOWED"
    assert wrong.json["success"] is False


@pytest.mark.parametrize("timeout", [-1, 0, 1e309, 10 ** 400, "NaN", 3601, True])
def test_timeout_numbers_out_of_range_are_400(client, timeout):
    body = ('{"model_type": "punctuation", "timeout": %s}' % timeout).encode() if not isinstance(timeout, str) \
        else b'{"model_type": "punctuation", "timeout": NaN}'
    resp = client.simulate_post("/model/load", body=body)
    assert resp.status_code == 400 and resp.json["error_code"] == "INVALID_REQUEST"


def test_bad_bodies_never_reach_the_facade(client, fake):
    for body in (b"{not json", b'{"model_type": "punctuation", "timeout": 0}', b'{"model_type": 3}'):
        assert client.simulate_post("/model/load", body=body).status_code == 400
    assert fake.calls == []


@pytest.mark.parametrize("code", sorted(HTTP_STATUS))
def test_every_error_code_the_facade_raises_has_its_status_and_the_envelope(client, fake, code):
    fake.refuse_with = SupervisorError(code, "Refused", "because the test said so", model_type="punctuation")
    resp = client.simulate_post("/model/load", json={"model_type": "punctuation"})
    assert resp.status_code == HTTP_STATUS[code]
    assert resp.json == {"success": False, "error": "Refused", "error_code": code,
                         "details": "because the test said so", "model_type": "punctuation"}


def test_an_async_load_answers_202_with_its_job_and_the_job_follows_the_load(client, fake):
    started = client.simulate_post("/model/load", json={"model_type": "punctuation"})
    assert started.status_code == 202 and started.json["current_status"] == "loading"
    job = client.simulate_get(f"/model/load/{started.json['load_id']}").json["job"]
    assert job["status"] == "loading" and job["model_type"] == "punctuation"
    fake.finish_loads()
    job = client.simulate_get(f"/model/load/{started.json['load_id']}").json["job"]
    assert job["status"] == "completed" and job["finished_at"]
    info = client.simulate_get("/model/info").json["available_models"]["punctuation"]
    assert info["status"] == "loaded" and info["loaded"] is True and "details" not in info


def test_a_sync_load_answers_200_once_loaded_and_an_unload_reports_what_it_freed(client):
    loaded = client.simulate_post("/model/load", json={"model_type": "vad", "async_load": False})
    assert loaded.status_code == 200 and loaded.json["status"] == "loaded" and loaded.json["load_time_ms"] == 12.5
    unloaded = client.simulate_delete("/model/unload/vad")
    assert unloaded.status_code == 200 and unloaded.json["memory_freed_mb"] == 42.0
    assert unloaded.json["message"] == "Model unloaded successfully"


def test_health_and_readiness_follow_the_facade(client, fake):
    assert client.simulate_get("/healthz").status_code == 200
    punctuation = fake.models["punctuation"]
    punctuation.config = msgspec.structs.replace(punctuation.config, required=True)
    assert client.simulate_get("/readyz").status_code == 503
    fake.finish_loads()
    client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
    assert client.simulate_get("/readyz").status_code == 200
    fake.alive = False
    assert client.simulate_get("/healthz").status_code == 503


def test_head_answers_wherever_get_does_without_a_body(client):
    for path in ("/healthz", "/readyz", "/model/info", "/v2", "/v2/health/live", "/v2/models/vad",
                 "/v2/models/vad/config", "/openapi.json", "/metrics", "/v1/models"):
        got, head = client.simulate_get(path), client.simulate_head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers.get("content-type") == got.headers.get("content-type"), path
    assert client.simulate_head("/v2/models/whisper").status_code == 404
    assert client.simulate_head("/model/load").status_code == 405   # POST only: no GET, so no HEAD
