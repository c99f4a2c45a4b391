"""API key, loopback binding, hostile paths and numbers, and logs that never carry texts or keys."""

from __future__ import annotations

import subprocess
import sys

import falcon.testing
import pytest
import requests

from api.app import create_app
from tests.helpers import REPO, ServerProcess

KEY = "s3cret-key-for-tests-0123456789"


def test_api_key_guards_every_route_but_the_health_probes(sup):
    client = falcon.testing.TestClient(create_app(sup, api_key=KEY))
    for probe in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):  # a kubelet sends no secret
        assert client.simulate_get(probe).status_code == 200, probe
    for guarded in ("/v2", "/v2/models/punctuation", "/metrics", "/model/punctuation/ready"):
        assert client.simulate_get(guarded).status_code == 401, guarded
    assert client.simulate_post("/v2/repository/index").json == {"error": "Missing or wrong API key: send the "
                                                                 "header `Authorization: Bearer <key>` with one "
                                                                 "of the server's API keys"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}):
        resp = client.simulate_get("/model/info", headers=headers)
        assert resp.status_code == 401 and resp.json["error_code"] == "UNAUTHORIZED"
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    ok = client.simulate_get("/model/info", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    unknown = client.simulate_get("/nope", headers={})
    assert unknown.status_code == 401  # no route map for strangers


def test_refuses_a_public_address_without_a_key(tmp_path):
    run = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--host", "0.0.0.0", "--models", "demo",
                          "--cache-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 2
    assert "refusing to serve on 0.0.0.0 without an API key" in run.stderr and "--allow-unauthenticated" in run.stderr


@pytest.mark.parametrize("path", ["/model/unload/..%2F..%2Fetc", "/model/unload/%00", "/model/load/%00",
                                  "/model/unload/" + "x" * 10_000, "/asr/streams/" + "y" * 10_000 + "/finish",
                                  "/model/load/..", "/asr/streams/%00"])
def test_hostile_path_parameters_are_clear_4xx(client, path):
    method = client.simulate_delete if "unload" in path or path.startswith("/asr/streams/%00") else (
        client.simulate_post if path.endswith("finish") else client.simulate_get)
    resp = method(path)
    assert 400 <= resp.status_code < 500 and resp.json["success"] is False
    assert len(resp.text) < 2000  # a 10 kB name is not echoed back whole


def test_logs_carry_neither_texts_nor_the_api_key_even_at_debug(cache_dir, tmp_path):
    """At DEBUG the WebSocket library logs every handshake line: the key in `?token=`, in `Authorization` and
    in the browser's key subprotocol must not reach the log all the same."""
    import asyncio

    from websockets.asyncio.client import connect

    secret_text = "这是一段不应出现在日志里的秘密文本"
    server = ServerProcess(cache_dir, extra_args=["--api-key", KEY, "--log-level", "DEBUG"],
                           log_path=tmp_path / "server.log")

    async def handshakes() -> None:
        for url, options in ((f"{server.ws_url}/?token={KEY}", {}),
                             (server.ws_url, {"additional_headers": {"Authorization": f"Bearer {KEY}"}}),
                             (f"{server.ws_url}/v1/realtime", {"subprotocols": ["realtime",
                                                                               f"openai-insecure-api-key.{KEY}"]}),
                             (f"{server.ws_url}/?token=wrong-key-attempt", {})):
            try:
                async with connect(url, open_timeout=30, **options):
                    pass
            except Exception:  # the wrong key is refused: its handshake is logged all the same
                pass
    try:
        auth = {"Authorization": f"Bearer {KEY}"}
        resp = requests.post(server.url + "/punctuation", json={"text": secret_text}, headers=auth, timeout=120)
        assert resp.status_code == 200
        requests.get(server.url + "/model/info", headers={"Authorization": "Bearer wrong-key-attempt"}, timeout=10)
        requests.get(f"{server.url}/model/info?token={KEY}", timeout=10)
        asyncio.run(handshakes())
        assert server.stop() == 0
    finally:
        server.kill_everything()
    log = server.log_path.read_text()
    assert "punctuation" in log and "DEBUG websockets" in log  # the log does describe what happened
    for secret in (secret_text, secret_text[:6], KEY, "wrong-key-attempt"):
        assert secret not in log
