"""Benchmark baselines, run as their own process: what a user gets with FunASR in-process, no server.

    python -m scripts.bench_baseline --model-id punctuation --model-dir DIR --requests 200

Prints one JSON object: the in-process load time (the first load in a process that already imported torch and
funasr), the memory still held after `del model; gc.collect()`, and direct (no HTTP, no ZeroMQ) request
latencies. With `--naive`, instead prints the monotonic time at which the model
became ready, so the parent can time a naive cold start (interpreter + imports + load) from outside.
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


def naive(model_dir: str) -> None:
    import torch

    torch.set_num_threads(1)
    plain_automodel(model_dir)
    print(json.dumps({"ready_at": time.monotonic()}), flush=True)


def in_process(model_id: str, model_dir: str, requests: int, recording: str | None) -> dict:
    """One load in this process (its first, as a user's would be), what del+gc gives back, then direct calls."""
    import torch

    from model_procs.engines import ENGINES
    from supervisor.kinds import KINDS
    from scripts.bench_requests import Recording, direct_latencies

    torch.set_num_threads(1)
    gc.collect()
    before = rss_mb()
    began = time.monotonic()
    model = plain_automodel(model_dir)
    load_ms = (time.monotonic() - began) * 1000
    held = rss_mb() - before
    del model
    gc.collect()
    kept = rss_mb() - before
    result = {"inproc_load_ms": load_ms, "inproc_held_mb": held, "inproc_kept_after_del_mb": kept}
    if requests:
        engine = ENGINES[KINDS[model_id].engine](plain_automodel(model_dir))  # the same calls our workers make
        engine.warm_up()
        result["direct_ms"] = direct_latencies(model_id, engine, requests, Recording(Path(recording)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--naive", action="store_true")
    parser.add_argument("--recording", help="the WAV the requests feed (FunASR's example)")
    args = parser.parse_args()
    if args.naive:
        naive(args.model_dir)
        return
    import funasr  # noqa: F401  (imports are not part of an in-process load)
    print(json.dumps(in_process(args.model_id, args.model_dir, args.requests, args.recording)))


if __name__ == "__main__":
    sys.exit(main())
