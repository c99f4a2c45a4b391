"""Benchmark baselines, run as their own process: what a user gets with FunASR in-process, no server.

    python -m scripts.bench_baseline --model-id punctuation --model-dir DIR --repeats 3 --requests 200

Prints one JSON object: in-process load times, memory kept after `del model; gc.collect()`, and direct
(no HTTP, no ZeroMQ) request latencies. With `--naive`, instead prints the monotonic time at which the model
became ready, so the parent can time a naive cold start (interpreter + imports + load) from outside.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def naive(model_dir: str) -> None:
    import torch
    from funasr import AutoModel

    torch.set_num_threads(1)
    AutoModel(model=model_dir, disable_update=True, device="cpu", ncpu=1, disable_pbar=True, disable_log=True,
              log_level="WARNING")
    print(json.dumps({"ready_at": time.monotonic()}), flush=True)


def in_process(model_id: str, model_dir: str, repeats: int, requests: int) -> dict:
    import torch

    from model_procs.engines import build_engine
    from scripts.bench_requests import direct_latencies

    torch.set_num_threads(1)
    loads, kept, held = [], [], []
    for _ in range(repeats):
        gc.collect()
        before = rss_mb()
        began = time.monotonic()
        engine = build_engine(model_id, model_dir, "cpu", 1)
        loads.append((time.monotonic() - began) * 1000)
        loaded = rss_mb()
        held.append(loaded - before)
        del engine
        gc.collect()
        kept.append(rss_mb() - before)
    engine = build_engine(model_id, model_dir, "cpu", 1)
    engine.warm_up()
    return {"inproc_load_ms": loads, "inproc_held_mb": held, "inproc_kept_after_del_mb": kept,
            "direct_ms": direct_latencies(model_id, engine, requests)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--naive", action="store_true")
    args = parser.parse_args()
    if args.naive:
        naive(args.model_dir)
        return
    import funasr  # noqa: F401  (imports are not part of an in-process load)
    print(json.dumps(in_process(args.model_id, args.model_dir, args.repeats, args.requests)))


if __name__ == "__main__":
    sys.exit(main())
