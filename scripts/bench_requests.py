"""The benchmark's request workloads, run the same way directly on an engine and through the HTTP API."""

from __future__ import annotations

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


def http_latencies(url: str, model_id: str, n: int) -> list[float]:
    import requests

    session = requests.Session()
    if model_id == "punctuation":
        return timed(lambda: session.post(f"{url}/punctuation", json={"text": BENCH_TEXT}).raise_for_status(), n)
    stream_id = session.post(f"{url}/asr/streams", json={}).json()["stream_id"]
    chunk = bench_chunk().tobytes()
    headers = {"Content-Type": "audio/L16; rate=16000"}
    samples = timed(lambda: session.post(f"{url}/asr/streams/{stream_id}/audio", data=chunk,
                                         headers=headers).raise_for_status(), n)
    session.delete(f"{url}/asr/streams/{stream_id}")
    return samples
