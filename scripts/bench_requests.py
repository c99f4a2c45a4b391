"""The benchmark's request workloads, run the same way directly on an engine and through the HTTP API."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from pathlib import Path

import numpy as np

from scripts.recordings import pcm_of

BENCH_TEXT = ("今天天气很好我们一起去公园散步吧然后去吃午饭下午再去图书馆看书晚上回家做饭看电视早点休息明天还要上班呢"
              "所以不能太晚睡觉")[:50]
CHUNK_SAMPLES = 9600  # 600 ms at 16 kHz


VAD_OPTIONS = {"max_end_silence_time": 800, "disable_pbar": True}  # FunASR's published setting


class Recording:
    """FunASR's example recording as the benchmark's audio: its 600 ms chunks in order (wrapping around), or as
    many seconds of it as asked for; the same bytes go over HTTP and to the direct calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = np.frombuffer(pcm_of(path), dtype="<i2")

    def chunk(self, index: int) -> np.ndarray:
        index %= len(self.samples) // CHUNK_SAMPLES
        return self.samples[index * CHUNK_SAMPLES:(index + 1) * CHUNK_SAMPLES]

    def seconds(self, seconds: float) -> bytes:
        wanted = int(seconds * 16000)
        return np.tile(self.samples, wanted // len(self.samples) + 1)[:wanted].tobytes()


def timed(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def direct_latencies(model_id: str, engine, n: int, recording: Recording) -> list[float]:
    """The same requests as http_latencies, on the engine in this process. The VAD's baseline is plain
    `AutoModel.generate` on the whole recording, as FunASR's users call it."""
    if model_id == "punctuation":
        return timed(lambda: engine.punctuate(BENCH_TEXT), n)
    if model_id == "vad":
        samples = recording.samples.astype(np.float32) / 32768
        return timed(lambda: engine.model.generate(input=samples, **VAD_OPTIONS), n)
    if model_id == "asr":  # AutoModel.generate on the whole recording, as FunASR's users call it
        samples = recording.samples.astype(np.float32) / 32768
        return timed(lambda: engine.model.generate(input=samples, disable_pbar=True), n)
    chunks = itertools.count()
    return timed(lambda: engine.feed("bench", recording.chunk(next(chunks)).astype(np.float32) / 32768, False), n)


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


def http_latencies(url: str, model_id: str, n: int, recording: Recording) -> tuple[list[float], list[float]]:
    """Client-side latencies, and for the same requests the model's own time (Server-Timing)."""
    client = KeepAliveClient(url)
    if model_id == "punctuation":
        body = json.dumps({"text": BENCH_TEXT}).encode()
        return timed(lambda: client.post("/punctuation", body, "application/json"), n), client.model_ms
    if model_id == "vad":
        wav = recording.path.read_bytes()
        return timed(lambda: client.post("/vad", wav, "audio/wav"), n), client.model_ms
    if model_id == "asr":  # the whole recording in one request, as the direct call takes it
        wav = recording.path.read_bytes()
        path = "/asr/transcribe?model=asr&vad=false&punctuate=false"
        return timed(lambda: client.post(path, wav, "audio/wav"), n), client.model_ms
    stream_id = client.post("/asr/streams", b"{}", "application/json")["stream_id"]
    chunks = itertools.count()
    samples = timed(lambda: client.post(f"/asr/streams/{stream_id}/audio", recording.chunk(next(chunks)).tobytes(),
                                        "audio/L16; rate=16000"), n)
    model_ms = list(client.model_ms)
    client.post(f"/asr/streams/{stream_id}/finish", b"", "application/octet-stream")
    return samples, model_ms
