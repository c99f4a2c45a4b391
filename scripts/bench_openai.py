"""OpenAI's transcription API, ours against funasr's own `funasr-server`, on the same model directory and file.

    python scripts/bench_openai.py --size full --json bench-openai.json

Both servers run on loopback and answer `POST /v1/audio/transcriptions` (model `whisper-1`, FunASR's
`vad_example.wav`): funasr-server (`funasr.bin.server`, FastAPI, one AutoModel in its process) with
`--model-path` on the generated offline Paraformer, and ours with that model as its only one (no VAD, so both
transcribe the recording whole). funasr-server's AutoModel sets torch to 4 threads (`ncpu`'s default), so for
one client ours runs one replica with a thread per core, and for 8 clients two replicas of one thread each
(`max_replicas = 2`): the same CPU on both sides. Measured in one run: p50 latency with one client (requests
alternate between the servers, so the machine's drift falls on both), requests per second with 8 concurrent
clients, and what decoding MP3 and Opus costs against WAV in our decoder. Needs the `[bench]` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_server import BenchServer, free_port  # noqa: E402
from scripts.recordings import example  # noqa: E402

CLIENTS = 8


class PeerServer:
    """funasr-server on `model_dir`, started as its console entry does (`funasr.bin.server:main`)."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "funasr.bin.server", "--device", "cpu", "--host",
                                      "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--model-path",
                                      str(model_dir)], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def __enter__(self) -> "PeerServer":
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"funasr-server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("funasr-server did not answer within 300 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def transcribe(url: str, wav: bytes) -> float:
    began = time.perf_counter()
    resp = requests.post(url + "/v1/audio/transcriptions", files={"file": ("vad_example.wav", wav)},
                         data={"model": "whisper-1"}, timeout=600)
    resp.raise_for_status()
    assert resp.json()["text"] is not None
    return (time.perf_counter() - began) * 1000


def throughput(url: str, wav: bytes, total: int) -> float:
    """Requests per second with CLIENTS threads sending `total` requests between them."""
    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda _: transcribe(url, wav), range(total)))
    return total / (time.perf_counter() - began)


def decode_costs(wav: bytes, repeats: int) -> dict:
    """Our decoder on the same recording as WAV, MP3 and OGG/Opus: ms per file, median of `repeats`."""
    from api.common.decode import decode_audio
    from scripts.recordings import reencoded as encode

    files = {"wav": wav, "mp3": encode(wav, "mp3", "libmp3lame", 44100, "stereo"),
             "opus": encode(wav, "ogg", "libopus", 48000, "mono")}
    costs = {}
    for name, data in files.items():
        samples = []
        for _ in range(repeats):
            began = time.perf_counter()
            decode_audio(data, 7200)
            samples.append((time.perf_counter() - began) * 1000)
        costs[name] = round(statistics.median(samples), 2)
    return costs


def run(args: argparse.Namespace) -> dict:
    cache_dir = Path(args.cache_dir)
    subprocess.run([sys.executable, "-m", "model_procs.make_models", "--size", args.size, "--models", "asr",
                    "--out", str(cache_dir / "generated")], cwd=REPO, check=True, capture_output=True)
    model_dir = cache_dir / "generated" / f"asr-{args.size}"
    wav = example("vad_example.wav", cache_dir).read_bytes()
    raw: dict = {"ours_ms": [], "peer_ms": [], "ours_threads": os.cpu_count()}
    with PeerServer(model_dir, cache_dir / "funasr-server.log") as peer:
        transcribe(peer.url, wav)  # untimed: the first request warms it
        with BenchServer(cache_dir, args.size, ["asr"], threads=os.cpu_count()) as ours:
            ours.load("asr")
            transcribe(ours.url, wav)
            for _ in range(args.requests):
                raw["ours_ms"].append(transcribe(ours.url, wav))
                raw["peer_ms"].append(transcribe(peer.url, wav))
        # 8 clients on 2 replicas queue for minutes: past request_timeout_s's default a waiting request is a 504
        with BenchServer(cache_dir, args.size, ["asr"], replicas=2, server={"request_timeout_s": 1800}) as ours:
            ours.load("asr")
            ours.wait_for_replicas("asr", 2)
            transcribe(ours.url, wav)
            raw["ours_rps"] = throughput(ours.url, wav, args.concurrent)
            raw["peer_rps"] = throughput(peer.url, wav, args.concurrent)
    raw["decode_ms"] = decode_costs(wav, 5)
    ours_p50, peer_p50 = statistics.median(raw["ours_ms"]), statistics.median(raw["peer_ms"])
    summary = {"ours_p50_ms": round(ours_p50, 1), "peer_p50_ms": round(peer_p50, 1),
               "p50_ratio": round(ours_p50 / peer_p50, 3), "ours_rps": round(raw["ours_rps"], 4),
               "peer_rps": round(raw["peer_rps"], 4), "rps_ratio": round(raw["ours_rps"] / raw["peer_rps"], 3),
               # a WAV at 16 kHz skips the decoder: what MP3 and Opus add is their decode, as a share of a request
               "mp3_decode_share": round((raw["decode_ms"]["mp3"] - raw["decode_ms"]["wav"]) / ours_p50, 4),
               "opus_decode_share": round((raw["decode_ms"]["opus"] - raw["decode_ms"]["wav"]) / ours_p50, 4)}
    return {"size": args.size, "requests": args.requests, "concurrent": args.concurrent, "raw": raw,
            "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--requests", type=int, default=5, help="sequential requests per server")
    parser.add_argument("--concurrent", type=int, default=16, help="requests sent by the 8 concurrent clients")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args)
    s = result["summary"]
    print(f"one client, p50: ours {s['ours_p50_ms']} ms ({os.cpu_count()} threads), "
          f"funasr-server {s['peer_p50_ms']} ms "
          f"(ratio {s['p50_ratio']}, target <= 1.05)")
    print(f"{CLIENTS} clients: ours {s['ours_rps']} req/s (max_replicas = 2), funasr-server {s['peer_rps']} req/s "
          f"(ratio {s['rps_ratio']}, target >= 1.5)")
    print(f"decoding 70.5 s: {result['raw']['decode_ms']} ms; MP3 adds {s['mp3_decode_share']:.2%} to a "
          f"request, Opus {s['opus_decode_share']:.2%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
