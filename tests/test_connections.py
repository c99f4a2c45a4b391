"""Clients that hold connections or threads cannot wedge the server: idle and stalled sockets, and more long
requests than the thread pool has room for, against a real server."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.helpers import configured_server, speechlike_pcm, unload_everything, wait_for

CONFIG = ('[models.streaming_asr]\nsource = "generated:tiny"\n[models.punctuation]\nsource = "generated:tiny"\n'
          "[server]\nhttp_threads = 8\ncontrol_threads = 4\nchannel_timeout_s = 2\n")


@pytest.fixture(scope="module")
def module_server(cache_dir, tmp_path_factory, supervisor):
    """One server for the module: 8 HTTP threads (4 kept for control routes), a 2 s channel timeout."""
    yield from configured_server(cache_dir, tmp_path_factory.mktemp("connections"), CONFIG)


@pytest.fixture
def srv(module_server):
    """The module's server; no model process outlives the test that started it."""
    yield module_server
    unload_everything(module_server)


def timed_get(url: str) -> float:
    began = time.monotonic()
    requests.get(url, timeout=10).raise_for_status()
    return time.monotonic() - began


def test_idle_and_stalled_connections_neither_block_the_server_nor_stay(srv):
    idle, stalled = [], []
    for index in range(150):  # more than waitress's default connection limit (100)
        sock = socket.create_connection(("127.0.0.1", srv.port))
        if index % 2:
            sock.sendall(b"POST /punctuation HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"te")
            stalled.append(sock)
        else:
            idle.append(sock)
    try:
        assert timed_get(f"{srv.url}/healthz") < 2.0
        assert requests.get(f"{srv.url}/model/info", timeout=10).status_code == 200

        def closed(sock: socket.socket) -> bool:
            sock.settimeout(0.05)
            try:
                return sock.recv(1024) == b""
            except socket.timeout:
                return False
            except OSError:
                return True
        wait_for(lambda: all(closed(s) for s in idle + stalled), timeout=15)  # channel_timeout_s = 2
    finally:
        for sock in idle + stalled:
            sock.close()


def test_long_requests_beyond_the_thread_budget_are_refused_and_control_routes_still_answer(srv):
    requests.post(f"{srv.url}/model/load", json={"model_type": "all", "async_load": False}).raise_for_status()
    audio = speechlike_pcm(120.0)  # seconds each on the tiny model, one replica: they queue
    statuses: list[int] = []

    def transcribe() -> None:
        resp = requests.post(f"{srv.url}/asr/transcribe?punctuate=false&vad=false", data=audio,
                             headers={"Content-Type": "audio/L16; rate=16000"}, timeout=120)
        statuses.append(resp.status_code if resp.status_code == 200 else resp.json()["error_code"])
    clients = [threading.Thread(target=transcribe) for _ in range(10)]
    for client in clients:
        client.start()
    wait_for(lambda: requests.get(f"{srv.url}/model/info", timeout=10).json()["available_models"]
             ["streaming_asr"]["replicas"][0]["in_flight"], timeout=30)
    control = [timed_get(f"{srv.url}/{path}") for path in ("healthz", "model/info", "metrics") * 3]
    for client in clients:
        client.join(120)
    assert max(control) < 2.0, control  # every thread for model work is taken, the control routes are not
    assert statuses.count(200) >= 1 and "OVERLOADED" in statuses and set(statuses) <= {200, "OVERLOADED"}
    print(f"control routes while 10 transcriptions compete for 4 threads: max {max(control) * 1000:.0f} ms")


def test_a_body_larger_than_any_route_accepts_is_refused_before_it_is_read(srv):
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"POST /asr/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/L16; rate=16000\r\n"
                     b"Content-Length: 314572800\r\n\r\n")  # 300 MB announced, none sent
        sock.settimeout(10)
        assert sock.recv(1024).startswith(b"HTTP/1.1 413")
