"""Run a model on torch and on ONNX Runtime side by side, and print what each answered, as JSON.

    python -m scripts.onnx_parity --kind streaming_asr --model-dir DIR --cache CACHE [--quantize int8]
    python -m scripts.onnx_parity --cases cases.json

With `--cases` (a JSON list of {"kind", "model_dir", "cache", "quantize"}), every case runs in this one
interpreter, one JSON line each, in order: importing torch and funasr costs ~10 s of CPU, a case under a second
at the tiny size. A case that raises prints {"error": its traceback} and the next case still runs.

Streaming ASR is fed FunASR's `vad_example.wav` in 600 ms chunks, each chunk to both engines in turn (so the
machine's drift falls on both alike), and every chunk's text and time is kept; offline ASR transcribes the
recording in 10 s pieces; the VAD streams it in 600 ms pieces; punctuation punctuates a few sentences. Both
engines are built the way a model process builds them (`model_procs.engines.build_engine`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model_procs.engines import CHUNK_SAMPLES, SAMPLE_RATE, build_engine, pcm_to_float  # noqa: E402
from scripts.recordings import example, pcm_of  # noqa: E402
from supervisor.kinds import KINDS  # noqa: E402

SENTENCES = ("今天天气很好我们一起去公园散步吧", "你好", "请问明天的会议几点开始我们需要准备什么材料",
             "那我们就这么定了下周一见")
OFFLINE_PIECE = 10 * SAMPLE_RATE


def answers(engine, kind: str, samples: np.ndarray) -> list:
    """What one engine answered for each input, in order, with each call's time in ms."""
    results = []

    def timed(call):
        began = time.perf_counter()
        value = call()
        results.append((value, (time.perf_counter() - began) * 1000))

    if kind == "punctuation":
        for sentence in SENTENCES:
            timed(lambda: engine.punctuate(sentence))
        return results
    piece = OFFLINE_PIECE if kind == "asr" else CHUNK_SAMPLES
    for start in range(0, len(samples), piece):
        chunk, final = samples[start:start + piece], kind == "asr" or start + piece >= len(samples)
        timed(lambda: shown(kind, engine.feed("parity", chunk, final)))
    return results


def shown(kind: str, heard) -> list:
    """A Heard as JSON: VAD segments, or text with each token's times."""
    return [list(s) for s in heard.segments] if kind == "vad" else [heard.text, [list(w) for w in heard.words]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(KINDS))
    parser.add_argument("--model-dir")
    parser.add_argument("--cache", help="where the ONNX export is written (and the examples)")
    parser.add_argument("--quantize", default="none", choices=("none", "int8"))
    parser.add_argument("--cases", type=Path, help="a JSON list of cases to run instead of the one named above")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cases:
        cases = [Case(**case) for case in json.loads(args.cases.read_text())]
    elif args.kind and args.model_dir and args.cache:
        cases = [Case(args.kind, args.model_dir, args.cache, args.quantize)]
    else:
        parser.error("name a case (--kind, --model-dir, --cache) or give --cases")
    import torch

    torch.set_num_threads(args.threads)
    failed = 0
    for case in cases:
        try:
            result = side_by_side(case, args.threads)
        except Exception:  # reported in the case's line, so the other cases still run
            failed += 1
            result = {"error": traceback.format_exc()}
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if failed and not args.cases else 0


class Case(NamedTuple):
    kind: str
    model_dir: str
    cache: str
    quantize: str = "none"


def side_by_side(case: Case, threads: int) -> dict:
    """Both engines built as a model process builds them, fed the same inputs."""
    engine_class = KINDS[case.kind].engine
    torch_engine, _, _ = build_engine(engine_class, case.model_dir, "cpu", threads, case.cache, "mapped")
    began = time.monotonic()
    onnx_engine, _, runtime = build_engine(engine_class, case.model_dir, "cpu", threads, case.cache, "mapped",
                                           "onnx", case.quantize)
    install_ms = (time.monotonic() - began) * 1000
    samples = pcm_to_float(pcm_of(example("vad_example.wav", case.cache)))
    if case.kind == "streaming_asr":
        torch_results, onnx_results = interleaved_chunks(torch_engine, onnx_engine, samples)
    else:
        torch_results = answers(torch_engine, case.kind, samples)
        onnx_results = answers(onnx_engine, case.kind, samples)
    return {
        "engine": runtime.engine, "quantize": runtime.quantize, "note": runtime.note, "build_ms": install_ms,
        "export_ms": runtime.export_ms, "sessions_ms": runtime.sessions_ms,
        "torch": [value for value, _ in torch_results], "onnx": [value for value, _ in onnx_results],
        "torch_ms": [ms for _, ms in torch_results], "onnx_ms": [ms for _, ms in onnx_results],
    }


def interleaved_chunks(torch_engine, onnx_engine, samples: np.ndarray) -> tuple[list, list]:
    """Each 600 ms chunk to torch, then to ONNX Runtime: (text, ms) per chunk for each."""
    torch_results, onnx_results = [], []
    for start in range(0, len(samples), CHUNK_SAMPLES):
        chunk, final = samples[start:start + CHUNK_SAMPLES], start + CHUNK_SAMPLES >= len(samples)
        for engine, results in ((torch_engine, torch_results), (onnx_engine, onnx_results)):
            began = time.perf_counter()
            text = engine.feed("parity", chunk, final).text
            results.append((text, (time.perf_counter() - began) * 1000))
    return torch_results, onnx_results


if __name__ == "__main__":
    sys.exit(main())
