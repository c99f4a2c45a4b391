"""What a batch buys a model process: items per CPU-second at batch N against batch 1, on the same items, with the
batched text checked equal to the text alone.

    python scripts/bench_batching.py --size full --cache-dir DIR [--json out.json]

Runs the engines in this process (one torch thread, as a model process runs them), so the figures are the
model's work alone, without HTTP or the arbiter: punctuation texts (FunASR-style transcripts of 10 to 60
characters), offline Paraformer segments (the real FSMN-VAD segments of `vad_example.wav`), and 600 ms chunks of
the recording as one chunk of each of N streams at once on the streaming model: with `--engine torch` it runs a
batch's streams one after another (funasr's streaming state is one stream's dicts), with `--engine onnx` their
graph calls are stacked into one. Each figure is the best of `--repeats` rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example  # noqa: E402

TEXTS = ["今天天气很好我们一起去公园散步吧", "请问这附近有没有地铁站我想去火车站",
         "欢迎大家来体验达摩院推出的语音识别模型", "我们明天上午十点在会议室开会讨论一下项目的进度和下一步的计划",
         "好的没问题", "这个问题我们需要再研究一下然后给你答复", "你吃饭了吗", "他说他下周要去北京出差大概要待三天"]


def cpu_per_item(run, items: list, batch: int, repeats: int, timer: dict | None) -> tuple[float, list]:
    """Best CPU seconds per item over `repeats` rounds, running `items` in batches of `batch`; and the answers.
    With `timer`, `run` counts the CPU that counts into timer["cpu_s"] itself (it does untimed set-up too)."""
    best, answers = float("inf"), []
    for _ in range(repeats):
        if timer is not None:
            timer["cpu_s"] = 0.0
        began = time.process_time()
        answers = [a for i in range(0, len(items), batch) for a in run(items[i:i + batch])]
        spent = timer["cpu_s"] if timer is not None else time.process_time() - began
        best = min(best, spent / len(items))
    return best, answers


def measure(name: str, run, items: list, batches: list[int], repeats: int, timer: dict | None = None) -> dict:
    alone_s, alone = cpu_per_item(run, items, 1, repeats, timer)
    figures = {"items": len(items), "cpu_ms_per_item_batch_1": round(alone_s * 1000, 2)}
    for batch in batches:
        batched_s, answers = cpu_per_item(run, items, batch, repeats, timer)
        figures[f"cpu_ms_per_item_batch_{batch}"] = round(batched_s * 1000, 2)
        figures[f"throughput_batch_{batch}_vs_1"] = round(alone_s / batched_s, 3)
        figures[f"same_text_batch_{batch}"] = answers == alone
    print(name, json.dumps(figures), flush=True)
    return figures


def streaming_chunks(streaming, audio, args: argparse.Namespace) -> dict:
    """600 ms chunks of the recording, each round one chunk of each of N streams at once (a sequence batch),
    after every stream's first four chunks, so their look-back caches are full and of one length, as in a
    session that has run a few seconds."""
    from model_procs.heard import Feed

    chunks = [audio[i:i + 9600] for i in range(9600 * 4, 9600 * 28, 9600)]
    opened = {"n": 0}

    def chunk_round(batch: list) -> list[str]:
        opened["n"] += 1
        names = [f"r{opened['n']}-{k}" for k in range(len(batch))]
        for name in names:  # their first four chunks, not timed against the batch's figure
            for i in range(4):
                streaming.feed(name, audio[i * 9600:(i + 1) * 9600], False)
        began = time.process_time()
        texts = [h.text for h in streaming.feed_many([Feed(n, c, False) for n, c in zip(names, batch)])]
        warmed["cpu_s"] += time.process_time() - began
        return texts
    warmed = {"cpu_s": 0.0}
    return measure("streaming", chunk_round, chunks, args.batches, args.repeats, timer=warmed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--work", nargs="+", default=["punctuation", "offline", "streaming"],
                        choices=["punctuation", "offline", "streaming"])
    parser.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                        help="what runs the streaming and punctuation models (their ONNX graphs take a batch)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (torch engines; not yet run on a GPU here)")
    parser.add_argument("--quantize", default="none", choices=["none", "int8"], help="with --engine onnx")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from model_procs.engines import build_engine
    from model_procs.heard import Feed
    from model_procs.make_models import ensure_model

    torch.set_num_threads(1)
    generated = args.cache_dir / "generated"

    def engine(kind: str, engine_class: str, runtime: str = "torch"):
        folder = str(ensure_model(str(generated), kind, args.size))
        return build_engine(engine_class, folder, args.device, 1, str(args.cache_dir), "mapped", runtime,
                            args.quantize if runtime == "onnx" else "none")[0]

    with wave.open(str(example("vad_example.wav", args.cache_dir))) as recording:
        audio = np.frombuffer(recording.readframes(recording.getnframes()), "<i2").astype(np.float32) / 32768
    results: dict = {"size": args.size}

    if "punctuation" in args.work:
        punctuation = engine("punctuation", "PunctuationEngine", args.engine)
        results["punctuation"] = measure("punctuation", punctuation.punctuate_many, TEXTS, args.batches,
                                         args.repeats)
    if "offline" in args.work:
        offline = engine("asr", "OfflineAsrEngine")
        segments = [audio[s * 16:e * 16] for s, e in VAD_EXAMPLE_SEGMENTS]
        segments.sort(key=len)  # as a queue of similar segments would batch; padding is the batch's cost
        fed = iter(range(10 ** 9))
        results["offline_segments"] = measure(
            "offline", lambda pieces: [h.text for h in offline.feed_many([Feed(f"s{next(fed)}", p, True)
                                                                          for p in pieces])],
            segments, args.batches, args.repeats)
    if "streaming" in args.work:
        results["streaming_chunks"] = streaming_chunks(engine("streaming_asr", "StreamingAsrEngine", args.engine),
                                                       audio, args)
        results["streaming_chunks"]["engine"] = args.engine, args.quantize
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
