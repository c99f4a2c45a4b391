"""The benchmark's load workloads: how many real-time streams a server sustains, and what a long transcription
does to a live stream on the same replica (head-of-line blocking).

A real-time stream sends 600 ms of audio every 600 ms; it is sustained while its chunks' p95 latency stays
within 600 ms, the time until the next chunk arrives.
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np

from scripts.bench_requests import KeepAliveClient, Recording, timed

REAL_TIME_MS = 600.0
PCM = "audio/L16; rate=16000"


def paced_stream(url: str, chunks: int, latencies: list[float], recording: Recording,
                 start: threading.Barrier | None = None, model: str = "") -> None:
    """One client streaming the recording in real time: a chunk every 600 ms (sooner if the last one came back
    late), to `model` (default: the streaming ASR kind's default model)."""
    client = KeepAliveClient(url)
    named = f"?model={model}" if model else ""
    stream_id = client.post(f"/asr/streams{named}", b"{}", "application/json")["stream_id"]
    if start is not None:
        start.wait()
    next_at = time.monotonic()
    for index in range(chunks):
        time.sleep(max(0.0, next_at - time.monotonic()))
        began = time.monotonic()
        try:
            client.post(f"/asr/streams/{stream_id}/audio{named}", recording.chunk(index).tobytes(), PCM)
            latencies.append((time.monotonic() - began) * 1000)
        except RuntimeError:  # refused (OVERLOADED) or failed: this load is not sustained
            latencies.append(float("inf"))
        next_at += REAL_TIME_MS / 1000
    client.post(f"/asr/streams/{stream_id}/finish{named}", b"", "application/octet-stream")


def concurrent_streams(url: str, n: int, chunks: int, recording: Recording, model: str = "") -> list[float]:
    latencies: list[float] = []
    start = threading.Barrier(n)
    threads = [threading.Thread(target=paced_stream, args=(url, chunks, latencies, recording, start, model))
               for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else float("nan")


def streaming_capacity(url: str, max_streams: int, chunks: int, recording: Recording, model: str = "") -> dict:
    """Add one stream at a time until p95 chunk latency passes 600 ms; capacity is the last n within it."""
    steps, capacity = [], 0
    for n in range(1, max_streams + 1):
        latencies = concurrent_streams(url, n, chunks, recording, model)
        steps.append({"streams": n, "p50_ms": round(float(np.median(latencies)), 2),
                      "p95_ms": round(p95(latencies), 2)})
        if p95(latencies) > REAL_TIME_MS:
            break
        capacity = n
    return {"capacity": capacity, "capped": capacity == max_streams, "steps": steps}


def head_of_line(url: str, audio_s: float, chunks: int, recording: Recording, model: str = "") -> dict:
    """One live stream's chunk latency alone, then while a long `/asr/transcribe` (not split: one request)
    runs on the same replica (of `model`; default: the streaming ASR kind's default model)."""
    idle: list[float] = []
    paced_stream(url, chunks, idle, recording, model=model)
    named, and_named = (f"?model={model}", f"&model={model}") if model else ("", "")
    pcm = recording.seconds(audio_s)
    busy: list[float] = []
    transcribing = threading.Event()

    def transcribe() -> None:
        client = KeepAliveClient(url, timeout_s=3600)  # shares its replica: slower than alone, by design
        transcribing.set()
        try:
            client.post(f"/asr/transcribe?punctuate=false&vad=false{and_named}", pcm, PCM)
        finally:
            transcribing.clear()
    long = threading.Thread(target=transcribe)
    long.start()
    transcribing.wait()
    time.sleep(0.1)  # its upload is under way
    started = time.monotonic()
    client = KeepAliveClient(url)
    stream_id = client.post(f"/asr/streams{named}", b"{}", "application/json")["stream_id"]
    index, sent_at = itertools.count(), []
    while (transcribing.is_set() or not busy) and len(busy) < chunks * 100:
        sent_at.append(round(time.monotonic() - started, 3))
        busy += timed(lambda: client.post(f"/asr/streams/{stream_id}/audio{named}",
                                          recording.chunk(next(index)).tobytes(), PCM), 1)
        time.sleep(max(0.0, REAL_TIME_MS / 1000 - busy[-1] / 1000))
    long.join()
    client.post(f"/asr/streams/{stream_id}/finish{named}", b"", "application/octet-stream")
    return {"audio_s": audio_s, "idle_ms": idle, "busy_ms": busy, "busy_at_s": sent_at}
