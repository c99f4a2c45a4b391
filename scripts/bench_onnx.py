"""The ONNX Runtime engine against torch on the streaming model, one thread per process, in one run.

    python scripts/bench_onnx.py --size full --cache-dir DIR --json bench-onnx.json

1. Per chunk: `scripts.onnx_parity` on the streaming model, fp32 and then int8; each run feeds the 118 chunks of
   FunASR's `vad_example.wav` to torch and to ONNX Runtime in turn, so the ratio is against torch timed beside it.
   Also how many chunks' text equals torch's.
2. One server, one replica each of `streaming_asr` (torch), `streaming_asr-onnx` (fp32) and `streaming_asr-int8`:
   the real-time streams each sustains (a stream sends 600 ms every 600 ms; sustained while p95 chunk latency is
   within 600 ms; one model at a time), and load time with the export cached against the mapped torch loader
   (median of `--repeats` loads after a first).
3. Two replicas of each engine: RSS and Private_Dirty of each, so the second replica's cost is shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_capacity import streaming_capacity  # noqa: E402
from scripts.bench_requests import Recording  # noqa: E402
from scripts.bench_server import BenchServer  # noqa: E402
from scripts.recordings import example  # noqa: E402

ENGINES = {"streaming_asr": "", "streaming_asr-onnx": 'engine = "onnx"\n',
           "streaming_asr-int8": 'engine = "onnx"\nquantize = "int8"\n'}


def chunk_times(model_dir: Path, cache_dir: Path, quantize: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "scripts.onnx_parity", "--kind", "streaming_asr", "--model-dir",
                          str(model_dir), "--cache", str(cache_dir), "--quantize", quantize],
                         cwd=REPO, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    torch_p50, onnx_p50 = statistics.median(result["torch_ms"]), statistics.median(result["onnx_ms"])
    return {"quantize": quantize, "engine": result["engine"], "note": result["note"],
            "torch_p50_ms": round(torch_p50, 1), "onnx_p50_ms": round(onnx_p50, 1),
            "ratio": round(onnx_p50 / torch_p50, 3), "chunks": len(result["torch"]),
            "identical_chunks": sum(a == b for a, b in zip(result["torch"], result["onnx"])),
            "export_ms": round(result["export_ms"], 1), "sessions_ms": round(result["sessions_ms"], 1),
            "torch_ms": result["torch_ms"], "onnx_ms": result["onnx_ms"]}


def loads_and_capacity(cache_dir: Path, size: str, repeats: int, max_streams: int, chunks: int) -> dict:
    recording = Recording(example("vad_example.wav", cache_dir))
    out = {}
    with BenchServer(cache_dir, size, list(ENGINES), settings=ENGINES) as server:
        for name in ENGINES:
            server.load(name)  # the first: an export, if the cache lacks it
            server.unload(name)
            load_ms = []
            for _ in range(repeats):
                server.load(name)
                load_ms.append(server.info(name)["load_time_ms"])
                server.unload(name)
            server.load(name)
            view = server.info(name)
            out[name] = {"engine": view["engine"], "quantize": view["quantize"],
                         "engine_note": view["details"]["engine_note"], "load_ms": load_ms,
                         "load_ms_median": statistics.median(load_ms), "phases_ms": view["details"]["load_phases_ms"],
                         "capacity": streaming_capacity(server.url, max_streams, chunks, recording, name)}
            server.unload(name)
    return out


def two_replicas(cache_dir: Path, size: str) -> dict:
    out = {}
    with BenchServer(cache_dir, size, list(ENGINES), replicas=2, settings=ENGINES) as server:
        for name in ENGINES:
            server.load(name)
            server.wait_for_replicas(name, 2)
            view = server.info(name)
            out[name] = {"replicas": [{"rss_mb": r["memory_usage_mb"], "private_dirty_mb": r["memory_unique_mb"]}
                                      for r in view["replicas"]],
                         "shared_weights_mb": view.get("memory_shared_weights_mb")}
            server.unload(name)
    return out


def summary(result: dict) -> str:
    lines = ["| per 600 ms chunk, 1 thread | torch p50 | ONNX p50 | ratio | chunks with torch's text |",
             "|---|---|---|---|---|"]
    for run in result["chunks"]:
        lines.append(f"| ONNX {run['quantize'] if run['quantize'] != 'none' else 'fp32'} | {run['torch_p50_ms']} ms "
                     f"| {run['onnx_p50_ms']} ms | {run['ratio']} | {run['identical_chunks']}/{run['chunks']} |")
    lines += ["", "| model (1 replica) | engine | streams sustained | load (cached export) | "
                  "RSS, 2 replicas | Private_Dirty, 2 replicas | mapped weights (shared) |",
                  "|---|---|---|---|---|---|---|"]
    for name, run in result["server"].items():
        memory = result["two_replicas"][name]["replicas"]
        engine = run["engine"] + (f" {run['quantize']}" if run["quantize"] != "none" else "")
        lines.append(f"| {name} | {engine} | {run['capacity']['capacity']}{'+' if run['capacity']['capped'] else ''} "
                     f"| {run['load_ms_median']:.0f} ms | {' + '.join(str(m['rss_mb']) for m in memory)} MB "
                     f"| {' + '.join(str(m['private_dirty_mb']) for m in memory)} MB "
                     f"| {result['two_replicas'][name]['shared_weights_mb']} MB |")
    torch_streams = result["server"]["streaming_asr"]["capacity"]["capacity"]
    onnx_streams = result["server"]["streaming_asr-onnx"]["capacity"]["capacity"]
    lines.append(f"\nstreams per replica, ONNX fp32 / torch: {onnx_streams}/{torch_streams}"
                 + (f" = {onnx_streams / torch_streams:.2f}" if torch_streams else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full", choices=("tiny", "full"))
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-streams", type=int, default=12)
    parser.add_argument("--capacity-chunks", type=int, default=20, help="600 ms chunks per stream per step")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "model_procs.make_models", "--size", args.size, "--models", "streaming_asr",
                    "--out", str(args.cache_dir / "generated")], cwd=REPO, check=True, capture_output=True)
    model_dir = args.cache_dir / "generated" / f"streaming_asr-{args.size}"
    result = {"size": args.size,
              "chunks": [chunk_times(model_dir, args.cache_dir, quantize) for quantize in ("none", "int8")],
              "server": loads_and_capacity(args.cache_dir, args.size, args.repeats, args.max_streams,
                                           args.capacity_chunks),
              "two_replicas": two_replicas(args.cache_dir, args.size)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
