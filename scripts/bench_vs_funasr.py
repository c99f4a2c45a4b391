"""Live 2pass sessions, side by side: our server (torch, ONNX fp32, ONNX int8) against FunASR's own Python
WebSocket server, on the same model directories and the same real FSMN-VAD, each alone on the box.

    python scripts/bench_vs_funasr.py --size full --cache-dir DIR --json bench-vs-funasr.json

Each of N sessions streams FunASR's `vad_example.wav` (70.5 s) in real time as FunASR's own clients do: the init
message with no `hotwords` (as its HTML5 page sends it when none are set: the Python client's `"hotwords": ""` makes
the peer run SeACo's bias decoder on an empty list, which ours skips), 60 ms frames (`chunk_size [5,10,5]`,
`chunk_interval 10`), then `is_speaking: false` with `is_end: true` (both servers answer it with an end
acknowledgement). Sessions start spread over one 600 ms chunk, as independent callers would. A `2pass-offline`
answer's lag is its arrival minus the moment the frame holding its segment's end was sent; the segments are each
server's own (ours: FunASR's published ones, as our VAD ends speech after 800 ms of silence; the peer's: its VAD
replayed as it calls it, with funasr's default end-of-speech schedule, which closes far fewer). The segment the end
of input closes counts in the end lag instead (last frame sent to the acknowledgement). A server sustains N when,
over all N sessions, the offline lag's p95 is <= 3 s and every end lag <= 5 s, with no error and no segment
unanswered. N grows through `--counts` until a count is not sustained. Also reported: the speech lag, from each
published segment's end to the first answer whose segment reaches it (what a speaker waits for the final text,
whatever the VAD merged), and, fed the audio of each segment the peer answered, whether our offline model and
punctuation give the peer's text.
CPU: the server's whole process tree, as cores per real-time session (CPU seconds over N times the audio's
seconds); memory: the tree's PSS (shared pages counted once) with its models loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_funasr_ws import ONNX_STAGES, STAGES, percentile  # noqa: E402
from scripts.bench_server import BenchServer  # noqa: E402
from scripts.benchmark import prepare_models  # noqa: E402
from scripts.peer_server import PeerServer  # noqa: E402
from scripts.process_tree import cpu_s, pss_mb  # noqa: E402
from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of  # noqa: E402

FRAME = 1920                 # 60 ms of 16 kHz 16-bit PCM: FunASR's client's stride for chunk_size [5,10,5]
FRAME_S = 0.06
OFFLINE_LAG_P95_S = 3.0
END_LAG_S = 5.0
INIT = {"mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval": 10, "encoder_chunk_look_back": 4,
        "decoder_chunk_look_back": 0, "is_speaking": True, "itn": True}


async def session(ws_url: str, pcm: bytes, name: str, delay_s: float, timeout_s: float) -> dict:
    """One live session as FunASR's client runs it; answers timed as they arrive."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay_s)
    sent: list[float] = []
    offline: list[tuple[float, str]] = []
    async with connect(ws_url, subprotocols=["binary"], ping_interval=None, max_size=None,
                       open_timeout=60) as ws:
        await ws.send(json.dumps(INIT | {"wav_name": name}))
        began = time.perf_counter()

        async def send() -> None:
            for i in range(0, len(pcm), FRAME):
                await asyncio.sleep(max(0.0, began + len(sent) * FRAME_S - time.perf_counter()))
                await ws.send(pcm[i:i + FRAME])
                sent.append(time.perf_counter())
            await ws.send(json.dumps({"is_speaking": False, "is_end": True}))

        sender = asyncio.create_task(send())
        async with asyncio.timeout(timeout_s):
            while True:
                answer = json.loads(await ws.recv())
                arrived = time.perf_counter()
                if answer.get("error"):
                    raise RuntimeError(f"{name}: {answer['error']}")
                if answer.get("mode") == "2pass-offline":  # ours answers the last segment in the end message
                    offline.append((arrived, answer.get("text", "")))
                if answer.get("is_end"):
                    ended = arrived
                    break
        await sender
    return {"sent": sent, "offline": offline, "end_lag_s": ended - sent[-1]}


def sent_at(run: dict, ms: int) -> float:
    """When the frame holding this moment of the audio was sent."""
    return run["sent"][min(len(run["sent"]) - 1, ms // 60)]


def segment_lags(run: dict, ends_ms: list[int]) -> list[float]:
    """The k-th answer against the send time of the k-th end the server's VAD closes."""
    return [arrived - sent_at(run, end) for (arrived, _), end in zip(run["offline"], ends_ms)]


def speech_lags(run: dict, ends_ms: list[int]) -> list[float]:
    """Each published segment's end against the first answer whose segment reaches it: how long a speaker waits
    for the final text of what they said, whatever the server's VAD merged."""
    lags = []
    for end in (e for _, e in VAD_EXAMPLE_SEGMENTS):
        k = next((k for k, own in enumerate(ends_ms) if own >= end - 50), None)
        if k is not None and k < len(run["offline"]):
            lags.append(run["offline"][k][0] - sent_at(run, end))
    return lags


def trial(pid: int, ws_url: str, pcm: bytes, count: int, ends_ms: list[int]) -> dict:
    """`ends_ms`: where the server's VAD closes segments on this audio (the end of input closes one more)."""
    audio_s = len(pcm) / 32000

    async def all_of() -> list[dict]:
        return await asyncio.gather(*(session(ws_url, pcm, f"s{i}", i * 0.6 / count, audio_s + 600)
                                      for i in range(count)))
    began_cpu = cpu_s(pid)
    runs = asyncio.run(all_of())
    lags = [lag for run in runs for lag in segment_lags(run, ends_ms)]
    heard = [lag for run in runs for lag in speech_lags(run, ends_ms)]
    end_lags = [run["end_lag_s"] for run in runs]
    answers = sorted({len(run["offline"]) for run in runs})
    result = {"sessions": count, "offline_lag_p50_s": round(percentile(lags, 0.5), 2),
              "offline_lag_p95_s": round(percentile(lags, 0.95), 2), "end_lag_max_s": round(max(end_lags), 2),
              "speech_lag_p50_s": round(percentile(heard, 0.5), 2),
              "speech_lag_p95_s": round(percentile(heard, 0.95), 2), "offline_answers": answers,
              "cores_per_session": round((cpu_s(pid) - began_cpu) / (count * audio_s), 3),
              "texts": [text for _, text in runs[0]["offline"]]}
    result["sustained"] = (result["offline_lag_p95_s"] <= OFFLINE_LAG_P95_S and result["end_lag_max_s"] <= END_LAG_S
                           and min(answers) >= len(ends_ms))
    return result


def capacity(name: str, pid: int, ws_url: str, pcm: bytes, counts: list[int], ends_ms: list[int]) -> dict:
    """Warm up with one short session, then N sessions per count until one is not sustained."""
    asyncio.run(session(ws_url, pcm[:3 * 32000], "warm-up", 0, 600))
    entry: dict = {"pss_mb": round(pss_mb(pid), 1), "segment_ends_ms": ends_ms, "trials": []}
    for count in counts:
        try:
            result = trial(pid, ws_url, pcm, count, ends_ms)
        except Exception as exc:  # a refused, failed or timed-out session: this count is not sustained
            entry["trials"].append({"sessions": count, "sustained": False, "failed": repr(exc)[:300]})
            break
        entry["trials"].append(result)
        print(f"{name}: {count} sessions: offline lag p50 {result['offline_lag_p50_s']} s, p95 "
              f"{result['offline_lag_p95_s']} s (speech end to text p95 {result['speech_lag_p95_s']} s), "
              f"end lag max {result['end_lag_max_s']} s, {result['offline_answers']} answers, "
              f"{result['cores_per_session']} cores/session", flush=True)
        if not result["sustained"]:
            break
    entry["sustained"] = max([t["sessions"] for t in entry["trials"] if t["sustained"]], default=0)
    return entry


def same_text(server: BenchServer, pcm: bytes, peer: dict) -> dict:
    """Fed the very audio the peer gave its offline model for each segment it closed (its first session), does
    our offline model with punctuation (`/asr/transcribe`, VAD off) answer the peer's text?"""
    texts = peer["trials"][0].get("texts", [])
    equal = []
    for segment, text in zip(peer["segments"], texts):
        first, last = segment["frames"]
        resp = server.session.post(f"{server.url}/asr/transcribe", params={"vad": "false", "punctuate": "true"},
                                   data=pcm[first * FRAME:(last + 1) * FRAME], timeout=600,
                                   headers={"Content-Type": "application/octet-stream"})
        resp.raise_for_status()
        equal.append(resp.json()["punctuated_text"] == text)
    return {"segments": len(equal), "equal": sum(equal)}


def ours(cache_dir: Path, size: str, engine: str, quantize: str, pcm: bytes, counts: list[int],
         peer: dict | None) -> dict:
    onnx = f'engine = "onnx"\nquantize = "{quantize}"\n' if engine == "onnx" else ""
    with BenchServer(cache_dir, size, STAGES, server={"max_streams_per_replica": 512, "ws_max_sessions": 1024},
                     settings={stage: onnx for stage in ONNX_STAGES}) as server:
        for stage in STAGES:
            server.load(stage)
        # our VAD ends speech after a fixed 800 ms of silence, which gives FunASR's published segments
        ends_ms = [end for _, end in VAD_EXAMPLE_SEGMENTS if end + 800 <= len(pcm) // 32]
        entry = capacity(f"ours {engine} {quantize}", server.proc.pid, server.ws_url, pcm, counts, ends_ms)
        if peer and engine == "torch":
            entry["same_text_as_funasr"] = same_text(server, pcm, peer)
        return entry


def peer(cache_dir: Path, size: str, ncpu: int, pcm: bytes, counts: list[int]) -> dict:
    with PeerServer(cache_dir, prepare_models(cache_dir, size, STAGES), ncpu) as server:
        segments = server.segments(pcm, FRAME)
        entry = capacity(f"FunASR ncpu={ncpu}", server.proc.pid, server.ws_url, pcm, counts,
                         [segment["end_ms"] for segment in segments])
        return entry | {"segments": segments}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32])
    parser.add_argument("--ours", nargs="*", default=["torch", "onnx", "onnx-int8"],
                        help="our engines to run: torch, onnx, onnx-int8")
    parser.add_argument("--peer-ncpu", type=int, nargs="*", default=[2],
                        help="FunASR server runs, by its --ncpu (none: skip it)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stream only this much of the recording")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    prepare_models(args.cache_dir, args.size, STAGES)
    pcm = pcm_of(example("vad_example.wav", args.cache_dir))
    pcm = pcm[:int(args.seconds * 32000) // 2 * 2] if args.seconds else pcm
    result: dict = {"size": args.size, "audio_s": round(len(pcm) / 32000, 2), "ours": {}, "funasr": {}}
    for ncpu in args.peer_ncpu:
        result["funasr"][f"ncpu={ncpu}"] = peer(args.cache_dir, args.size, ncpu, pcm, args.counts)
    for name in args.ours:
        engine, _, quantize = name.partition("-")
        result["ours"][name] = ours(args.cache_dir, args.size, engine, quantize or "none", pcm, args.counts,
                                    next(iter(result["funasr"].values()), None))
    for side in ("funasr", "ours"):
        for name, entry in result[side].items():
            print(f"{side} {name}: {entry['sustained']} sustained 2pass sessions, PSS {entry['pss_mb']} MB")
    if "same_text_as_funasr" in result["ours"].get("torch", {}):
        print(f"FunASR's 2pass-offline segments, the same audio through ours (torch): "
              f"{result['ours']['torch']['same_text_as_funasr']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
