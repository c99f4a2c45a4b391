"""Benchmark baselines, run as their own process: what a user gets with FunASR and no server.

    python -m scripts.bench_baseline --model-id punctuation --model-dir DIR [--recording WAV]

A fresh interpreter, as a user's script is: it imports torch and funasr, loads the model once with plain
AutoModel and prints {"ready_at": monotonic time} the moment it is usable, so the parent times the naive cold
start (interpreter + imports + load) from outside. That load is also the in-process baseline (the first load in
a process that already imported torch and funasr), timed from inside; the next line is one JSON object with it,
the memory the load added and what `del model; gc.collect()` kept. Then, for each request count read from stdin,
one line of direct (no HTTP, no ZeroMQ) request latencies on a second model built the same way, so the parent
can interleave them with its HTTP requests; it exits at the end of stdin.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def plain_automodel(model_dir: str):
    """What a user without this server writes: funasr's AutoModel, no tricks (1 thread, as our workers)."""
    from funasr import AutoModel

    return AutoModel(model=model_dir, disable_update=True, device="cpu", ncpu=1, disable_pbar=True,
                     disable_log=True, log_level="WARNING")


def cold_start_and_load(model_dir: str) -> dict:
    """Imports, one timed load (its first, as a user's would be), and what del+gc gives back."""
    import torch

    torch.set_num_threads(1)
    import funasr  # noqa: F401  (part of the naive cold start; not of the in-process load)

    gc.collect()
    before = rss_mb()
    began = time.monotonic()
    model = plain_automodel(model_dir)
    ready_at = time.monotonic()
    print(json.dumps({"ready_at": ready_at}), flush=True)
    held = rss_mb() - before
    del model
    gc.collect()
    kept = rss_mb() - before
    return {"inproc_load_ms": (ready_at - began) * 1000, "inproc_held_mb": held, "inproc_kept_after_del_mb": kept}


def serve_direct_requests(model_id: str, model_dir: str, recording: str | None) -> None:
    """Each line of stdin is a request count: answer it with that many direct calls' latencies."""
    from model_procs.engines import ENGINES
    from supervisor.kinds import KINDS
    from scripts.bench_requests import Recording, direct_latencies

    engine = None
    for line in sys.stdin:
        if engine is None:
            engine = ENGINES[KINDS[model_id].engine](plain_automodel(model_dir))  # the same calls our workers make
            engine.warm_up()
        n = int(line)
        print(json.dumps({"direct_ms": direct_latencies(model_id, engine, n, Recording(Path(recording)))}),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--recording", help="the WAV the requests feed (FunASR's example)")
    args = parser.parse_args()
    print(json.dumps(cold_start_and_load(args.model_dir)), flush=True)
    serve_direct_requests(args.model_id, args.model_dir, args.recording)


if __name__ == "__main__":
    sys.exit(main())
