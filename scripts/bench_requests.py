"""The benchmark's request workloads, run the same way directly on an engine and through the HTTP API."""

from __future__ import annotations

import http.client
import json
import time

import numpy as np

BENCH_TEXT = ("今天天气很好我们一起去公园散步吧然后去吃午饭下午再去图书馆看书晚上回家做饭看电视早点休息明天还要上班呢"
              "所以不能太晚睡觉")[:50]
CHUNK_SAMPLES = 9600  # 600 ms at 16 kHz


def bench_chunk() -> np.ndarray:
    """600 ms of a tone with noise, as int16 samples (the same bytes go over HTTP)."""
    t = np.arange(CHUNK_SAMPLES) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.random.default_rng(0).standard_normal(CHUNK_SAMPLES)
    return (wave * 32767).astype("<i2")


def timed(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def direct_latencies(model_id: str, engine, n: int) -> list[float]:
    if model_id == "punctuation":
        return timed(lambda: engine.punctuate(BENCH_TEXT), n)
    chunk = bench_chunk().astype(np.float32) / 32768
    return timed(lambda: engine.feed("bench", chunk, False), n)


class KeepAliveClient:
    """A lean HTTP/1.1 client on one kept-alive connection (stdlib), so the figure is the server's cost,
    not a client library's."""

    def __init__(self, url: str, timeout_s: float = 120) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)

        self.model_ms: list[float] = []   # from each answer's Server-Timing header

    def get(self, path: str) -> dict:
        return self.post(path, None, None, method="GET")

    def post(self, path: str, body: bytes | None, content_type: str | None, method: str = "POST") -> dict:
        self.connection.request(method, path, body=body, headers={"Content-Type": content_type} if body else {})
        response = self.connection.getresponse()
        payload = json.loads(response.read())
        if response.status >= 300:
            raise RuntimeError(f"{path}: {response.status} {payload}")
        timing = response.getheader("Server-Timing", "")
        if timing.startswith("model;dur="):
            self.model_ms.append(float(timing.removeprefix("model;dur=")))
        return payload


def http_latencies(url: str, model_id: str, n: int) -> tuple[list[float], list[float]]:
    """Client-side latencies, and for the same requests the model's own time (Server-Timing)."""
    client = KeepAliveClient(url)
    if model_id == "punctuation":
        body = json.dumps({"text": BENCH_TEXT}).encode()
        return timed(lambda: client.post("/punctuation", body, "application/json"), n), client.model_ms
    stream_id = client.post("/asr/streams", b"{}", "application/json")["stream_id"]
    chunk = bench_chunk().tobytes()
    samples = timed(lambda: client.post(f"/asr/streams/{stream_id}/audio", chunk, "audio/L16; rate=16000"), n)
    model_ms = list(client.model_ms)
    client.post(f"/asr/streams/{stream_id}/finish", b"", "application/octet-stream")
    return samples, model_ms
