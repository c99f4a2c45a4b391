"""FunASR's runtime WebSocket protocol under load: real-time 2pass sessions on managed models.

    python scripts/bench_funasr_ws.py --size full --cache-dir DIR --json bench-ws.json

One server with the four stages (streaming ASR, offline ASR, punctuation, VAD), each with `max_replicas` 1 and
then 2. Each session streams FunASR's `vad_example.wav` in real time (600 ms of audio every 600 ms, mode 2pass);
the number of sessions doubles until the partial results' p95 latency passes 600 ms (or a session fails). A
partial's latency is from sending a chunk to receiving the `2pass-online` answer for it: the k-th answer of a
session belongs to the k-th chunk that gives text, which a calibration session paced at 2 s per chunk finds
first (a server that falls behind merges chunks, so the later answers count against earlier sends: latency is
over-, never under-stated). Also: time from a segment's end in the audio to its `2pass-offline` answer (it
includes the VAD's 800 ms of end silence), and one session's per-chunk latency over WebSocket (`online`) against
the HTTP stream API on the same audio, chunk by chunk, alternating. Needs only the package itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_server import BenchServer  # noqa: E402
from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of  # noqa: E402

STAGES = ["streaming_asr", "asr", "punctuation", "vad"]
ONNX_STAGES = ["streaming_asr", "asr", "punctuation"]   # --engine onnx: FSMN-VAD runs no faster in it
CHUNK = 19200            # 600 ms of 16 kHz 16-bit PCM
TARGET_P95_MS = 600.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


async def stream(ws_url: str, pcm: bytes, pace_s: float, name: str) -> dict:
    """One 2pass session: chunks sent every `pace_s`; answers timed as they come."""
    from websockets.asyncio.client import connect

    sent: list[float] = []
    online: list[tuple[float, str]] = []
    offline: list[float] = []
    async with connect(ws_url, subprotocols=["binary"], ping_interval=None, max_size=None) as ws:
        await ws.send(json.dumps({"mode": "2pass", "wav_name": name, "chunk_size": [5, 10, 5]}))
        began = time.perf_counter()

        async def send() -> None:
            for i in range(0, len(pcm), CHUNK):
                await asyncio.sleep(max(0.0, began + len(sent) * pace_s - time.perf_counter()))
                sent.append(time.perf_counter())
                await ws.send(pcm[i:i + CHUNK])
            await ws.send(json.dumps({"is_speaking": False}))

        sender = asyncio.create_task(send())
        while True:
            answer = json.loads(await ws.recv())
            now = time.perf_counter()
            if "error" in answer:
                raise RuntimeError(f"{name}: {answer['error']}")
            if answer["mode"] == "2pass-online":
                online.append((now, answer["text"]))
            elif answer["mode"] == "2pass-offline" and answer["text"]:
                offline.append(now - began)
            if answer["is_final"]:
                break
        await sender
    return {"sent": [t - began for t in sent], "online": [t - began for t, _ in online], "offline": offline}


def answering_chunks(calibration: dict) -> list[int]:
    """Which chunks give an online answer: each answer of a slow-paced session follows its own chunk."""
    sent = calibration["sent"]
    return sorted({max(i for i, t in enumerate(sent) if t <= arrived) for arrived in calibration["online"]})


def sessions_at(ws_url: str, pcm: bytes, count: int, chunks: list[int]) -> dict:
    async def all_of() -> list[dict]:
        return await asyncio.gather(*(stream(ws_url, pcm, 0.6, f"s{i}") for i in range(count)))
    runs = asyncio.run(all_of())
    latencies = [(arrived - run["sent"][chunk]) * 1000 for run in runs
                 for arrived, chunk in zip(run["online"], chunks)]
    ends = [end / 1000 for _, end in VAD_EXAMPLE_SEGMENTS if end / 1000 <= len(pcm) / 32000]
    to_offline = [(got - end) * 1000 for run in runs for got, end in zip(run["offline"], ends)]
    return {"sessions": count, "partial_p50_ms": round(percentile(latencies, 0.5), 1),
            "partial_p95_ms": round(percentile(latencies, 0.95), 1), "partials": len(latencies),
            "segment_to_offline_p50_ms": round(percentile(to_offline, 0.5), 1),
            "segment_to_offline_p95_ms": round(percentile(to_offline, 0.95), 1)}


def capacity(server: BenchServer, pcm: bytes, chunks: list[int], most: int) -> list[dict]:
    trials, count = [], 1
    while count <= most:
        try:
            trial = sessions_at(server.ws_url, pcm, count, chunks)
        except Exception as exc:  # a refused or failed session ends the search at this count
            trials.append({"sessions": count, "failed": str(exc)[:200]})
            break
        trials.append(trial)
        print(f"  {count} sessions: partial p95 {trial['partial_p95_ms']} ms, segment end -> offline p50 "
              f"{trial['segment_to_offline_p50_ms']} ms", flush=True)
        if trial["partial_p95_ms"] > TARGET_P95_MS:
            break
        count *= 2
    return trials


def chunk_latencies(server: BenchServer, pcm: bytes) -> dict:
    """One session, chunk by chunk, waiting for each answer, alternating: over WebSocket (`online`: only the
    streaming model) and over the HTTP stream API. A chunk that gives no text has no WebSocket answer: it is
    skipped on both sides after a 3 s wait."""
    from websockets.asyncio.client import connect

    session = requests.Session()

    def over_http(stream_id: str, chunk: bytes) -> float:
        began = time.perf_counter()
        session.post(f"{server.url}/asr/streams/{stream_id}/audio", data=chunk, timeout=60,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        return (time.perf_counter() - began) * 1000

    async def alternating() -> tuple[list[float], list[float]]:
        stream_id = session.post(server.url + "/asr/streams", json={}, timeout=60).json()["stream_id"]
        ws_ms, http_ms = [], []
        async with connect(server.ws_url, subprotocols=["binary"], ping_interval=None) as ws:
            await ws.send(json.dumps({"mode": "online"}))
            for i in range(0, len(pcm), CHUNK):
                began = time.perf_counter()
                await ws.send(pcm[i:i + CHUNK])
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                except asyncio.TimeoutError:
                    await asyncio.to_thread(over_http, stream_id, pcm[i:i + CHUNK])  # keep the two in step
                    continue
                ws_ms.append((time.perf_counter() - began) * 1000)
                http_ms.append(await asyncio.to_thread(over_http, stream_id, pcm[i:i + CHUNK]))
        session.delete(f"{server.url}/asr/streams/{stream_id}", timeout=60)
        return ws_ms, http_ms

    ws_ms, http_ms = asyncio.run(alternating())
    return {"ws_p50_ms": round(statistics.median(ws_ms), 2), "http_p50_ms": round(statistics.median(http_ms), 2),
            "ratio": round(statistics.median(ws_ms) / statistics.median(http_ms), 3), "chunks": len(ws_ms)}


def run(args: argparse.Namespace) -> dict:
    cache_dir = Path(args.cache_dir)
    pcm = pcm_of(example("vad_example.wav", cache_dir))[:int(args.seconds * 32000) // 2 * 2]
    result: dict = {"size": args.size, "seconds": args.seconds, "engine": args.engine, "quantize": args.quantize,
                    "max_batch": args.max_batch, "replicas": {}}
    for replicas in args.replicas:
        engine = f'engine = "{args.engine}"\nquantize = "{args.quantize}"\n' if args.engine == "onnx" else ""
        batch = f"max_batch = {args.max_batch}\n" if args.max_batch else ""
        with BenchServer(cache_dir, args.size, STAGES, replicas=replicas,
                         server={"max_streams_per_replica": 512, "ws_max_sessions": 1024},
                         settings={stage: (engine if stage in ONNX_STAGES else "") + batch for stage in STAGES}
                         ) as server:
            for stage in STAGES:
                server.load(stage)
                server.wait_for_replicas(stage, replicas)
            calibration = asyncio.run(stream(server.ws_url, pcm, args.calibration_pace_s, "calibration"))
            chunks = answering_chunks(calibration)
            print(f"max_replicas = {replicas}: {len(chunks)} of {len(calibration['sent'])} chunks answer", flush=True)
            entry = {"answering_chunks": len(chunks), "trials": capacity(server, pcm, chunks, args.most)}
            if replicas == args.replicas[0]:
                entry["chunk_latency"] = chunk_latencies(server, pcm)
            result["replicas"][str(replicas)] = entry
    return result


def sustained(trials: list[dict]) -> int:
    return max([t["sessions"] for t in trials if "failed" not in t and t["partial_p95_ms"] <= TARGET_P95_MS],
               default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per session (of the 70.5 s example)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--most", type=int, default=128, help="the most sessions tried")
    parser.add_argument("--calibration-pace-s", type=float, default=2.0,
                        help="seconds between chunks of the calibration session (above any chunk's latency)")
    parser.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                        help="what runs the streaming, offline and punctuation models (the VAD: torch)")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none", help="with --engine onnx")
    parser.add_argument("--max-batch", type=int, default=0, help="every stage's max_batch (0: the kinds' defaults)")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args)
    for replicas, entry in result["replicas"].items():
        print(f"max_replicas = {replicas}: {sustained(entry['trials'])} real-time 2pass sessions with partial p95 "
              f"<= {TARGET_P95_MS:g} ms")
        if "chunk_latency" in entry:
            c = entry["chunk_latency"]
            print(f"per-chunk p50: WebSocket {c['ws_p50_ms']} ms, HTTP stream {c['http_p50_ms']} ms "
                  f"(ratio {c['ratio']}, target <= 1.05)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
