"""Batched text equals text alone, on real funasr: punctuation texts (tiny and full-size CT-Punc), the real
recording's VAD segments on offline SeACo- and BiCif-Paraformer, and every 600 ms chunk of it on three streams at
once, in torch (one after another) and in ONNX Runtime (stacked into one call). Runs in a subprocess: the test
process, like the API process, never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example
from tests.helpers import REPO

BATCHED_EQUALS_ALONE = r"""
import json, sys, wave
import numpy as np, torch
from model_procs.engines import build_engine, padded_forward
from model_procs.heard import Feed

tiny, full_punctuation, recording = sys.argv[1], sys.argv[2], sys.argv[3]
segments = json.loads(sys.argv[4])
with wave.open(recording) as w:
    audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
out = {}

texts = ["今天天气很好我们一起去公园散步吧", "你好", "这是一个很长的句子" * 9, "明天下雨吗我们还去不去", "一"]
for name, folder, runtime in (("tiny", tiny + "/punctuation-tiny", "torch"), ("full", full_punctuation, "torch"),
                              ("onnx", tiny + "/punctuation-tiny", "onnx")):
    engine, _, chosen = build_engine("PunctuationEngine", folder, "cpu", 1, tiny + "/cache", "mapped", runtime)
    assert chosen.engine == runtime, chosen
    alone = [engine.punctuate(t) for t in texts]
    out[f"punctuation_{name}"] = [alone, engine.punctuate_many(texts)]
    network = engine.model.model
    ids = [torch.randint(1, 200, (1, n)) for n in (3, 20, 11)]
    calls = [{"text": i, "text_lengths": torch.tensor([i.shape[1]], dtype=torch.int32)} for i in ids]
    with torch.no_grad():
        together = padded_forward(network.punc_forward_one, calls)
        apart = [network.punc_forward_one(**call) for call in calls]
    out[f"punctuation_{name}_logits_max_abs"] = max(float((a[0] - b[0]).abs().max()) for a, b in zip(apart, together))

pieces = [audio[s * 16:e * 16] for s, e in segments]
for kind in ("asr", "asr-bicif"):
    engine, _, _ = build_engine("OfflineAsrEngine", f"{tiny}/{kind}-tiny", "cpu", 1, tiny + "/cache", "mapped")
    alone = [tuple(engine.transcribe(p)) for p in pieces]
    batched = engine.feed_many([Feed(f"s{i}", p, True) for i, p in enumerate(pieces)])
    fours = [h for i in range(0, len(pieces), 4)
             for h in engine.feed_many([Feed(f"f{i + j}", p, True) for j, p in enumerate(pieces[i:i + 4])])]
    out[kind] = [alone, [tuple(h) for h in batched], [tuple(h) for h in fours], engine.batches]

starts = [0, 160000, 480000]
chunks = [[audio[s + i:s + i + 9600] for i in range(0, 9600 * 40, 9600)] for s in starts]


def chunk_by_chunk(runtime):  # each stream's chunks alone, then the streams' i-th chunks as one batch
    engine, _, _ = build_engine("StreamingAsrEngine", tiny + "/streaming_asr-tiny", "cpu", 1, tiny + "/cache",
                                "mapped", runtime=runtime)
    alone = [[engine.feed(f"a{k}", c, i == len(cs) - 1).text for i, c in enumerate(cs)]
             for k, cs in enumerate(chunks)]
    together = [[], [], []]
    for i in range(len(chunks[0])):
        heard = engine.feed_many([Feed(f"b{k}", cs[i], i == len(cs) - 1) for k, cs in enumerate(chunks)])
        for k, h in enumerate(heard):
            together[k].append(h.text)
    return [alone, together], engine


out["streaming"], _ = chunk_by_chunk("torch")
out["streaming_onnx"], onnx = chunk_by_chunk("onnx")
out["streaming_onnx"].append(onnx.gathered.stacked_calls)
print(json.dumps(out, ensure_ascii=False))
"""


def test_a_batch_answers_exactly_what_its_items_answer_alone(tiny_models, full_punctuation_dir, cache_dir):
    recording = example("vad_example.wav", cache_dir)
    out = subprocess.run([sys.executable, "-c", BATCHED_EQUALS_ALONE, str(tiny_models), str(full_punctuation_dir),
                          str(recording), json.dumps(VAD_EXAMPLE_SEGMENTS)], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for size in ("tiny", "full", "onnx"):   # the ONNX graph too: padded rows masked as torch masks them
        alone, batched = result[f"punctuation_{size}"]
        assert batched == alone and all(alone)
        # the padded forward's logits: float noise only (the encoder masks the padding)
        assert result[f"punctuation_{size}_logits_max_abs"] < 1e-4
    for kind in ("asr", "asr-bicif"):   # SeACo and BiCif: text and token times
        alone, batched, fours, batches = result[kind]
        assert batches and batched == alone and fours == alone
        assert sum(bool(heard[0]) for heard in alone) >= len(VAD_EXAMPLE_SEGMENTS) // 2  # text to compare
    alone, together = result["streaming"]
    assert together == alone and any(any(texts) for texts in alone)
    # ONNX Runtime: the three streams' chunks stacked into one encoder call (and decoder calls where their
    # token counts match), every chunk's text as each stream's alone
    alone, together, stacked = result["streaming_onnx"]
    assert together == alone and any(any(texts) for texts in alone) and stacked >= 40
