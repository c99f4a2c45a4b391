"""The mapped loader gives, bit for bit, what plain `AutoModel` gives, or says why not and falls back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

# One subprocess for every case (imports cost seconds); this test process must never import torch.
COMPARE_LOADERS = """
import json, shutil, sys
from pathlib import Path
import numpy as np, torch
from funasr import AutoModel
from model_procs.engines import load_automodel
from model_procs.make_models import ensure_model

root = Path(sys.argv[1])
AUDIO = (np.random.default_rng(3).standard_normal(16000 * 2) * 0.1).astype(np.float32)
STREAM = {"chunk_size": [0, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}


def variant(model_id, case):
    source = ensure_model(root / "generated", model_id, "tiny")
    target = root / f"{model_id}-{case}"
    shutil.copytree(source, target, dirs_exist_ok=True)
    state = torch.load(target / "model.pt", weights_only=True)
    if case == "wrapped":          # a training checkpoint: wrapped and saved from DataParallel
        torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, target / "model.pt")
    elif case == "legacy":         # torch's pre-zip format, which mmap cannot read
        torch.save(state, target / "model.pt", _use_new_zipfile_serialization=False)
    elif case == "missing-key":    # funasr keeps a missing tensor's init value: only its own loader can say which
        state.pop(sorted(state)[-1])
        torch.save(state, target / "model.pt")
    return str(target)


def output(model_id, automodel):
    if model_id == "punctuation":
        return automodel.generate(input="今天天气很好我们去公园玩吧")[0]["text"]
    return automodel.generate(input=AUDIO, cache={}, is_final=True, **STREAM)[0]["text"]


def compare(model_id, case, loader="mapped"):
    model_dir = variant(model_id, case)
    built = load_automodel(model_dir, "cpu", 1, str(root / "cache"), loader)
    plain = AutoModel(model=model_dir, disable_update=True, device="cpu", ncpu=1, disable_log=True,
                      log_level="WARNING")
    ours, theirs = built.automodel.model.state_dict(), plain.model.state_dict()
    tensors = [*built.automodel.model.parameters(), *built.automodel.model.buffers()]
    return {"model": model_id, "case": case, "loader": built.loader, "reason": built.fallback_reason,
            "weights_file": built.weights_file,
            "same_keys": list(ours) == list(theirs),
            "bit_identical": all(torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype
                                 for k in theirs),
            "on_meta": sum(t.is_meta for t in tensors),
            "same_output": output(model_id, built.automodel) == output(model_id, plain)}


results = [compare(m, c) for m in ("streaming_asr", "punctuation") for c in ("plain", "wrapped", "legacy")]
results += [compare("punctuation", "missing-key"), compare("streaming_asr", "automodel-chosen", "automodel")]
converted = sorted(p.name for p in (root / "cache" / "mapped").glob("*.pt"))
results.append({"converted_files": converted, "reused": compare("punctuation", "wrapped")["weights_file"]})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory):
    root = tmp_path_factory.mktemp("loaders")
    out = subprocess.run([sys.executable, "-c", COMPARE_LOADERS, str(root)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=600)
    results = json.loads(out.stdout.strip().splitlines()[-1])
    return {(r["model"], r["case"]): r for r in results[:-1]}, results[-1], out.stderr


@pytest.mark.parametrize("model_id", ["streaming_asr", "punctuation"])
@pytest.mark.parametrize("case", ["plain", "wrapped", "legacy"])
def test_mapped_weights_are_bit_identical_to_automodels(comparisons, model_id, case):
    result = comparisons[0][(model_id, case)]
    assert result["loader"] == "mapped", result["reason"]
    assert result["same_keys"] and result["bit_identical"] and result["same_output"]
    assert result["on_meta"] == 0
    if case == "plain":  # mapped straight from the model directory
        assert result["weights_file"].endswith(f"{model_id}-plain/model.pt")
    else:                # converted once into the cache, then mapped from there
        assert "/cache/mapped/" in result["weights_file"]


def test_a_checkpoint_is_converted_once_per_content(comparisons):
    by_case, conversions, _ = comparisons
    # wrapped and legacy copies of one model hold the same tensors but are different files: one conversion each
    assert len(conversions["converted_files"]) == 4
    assert conversions["reused"] == by_case[("punctuation", "wrapped")]["weights_file"]


def test_what_the_mapped_loader_cannot_prove_falls_back_with_the_reason_logged(comparisons):
    by_case, _, stderr = comparisons
    missing = by_case[("punctuation", "missing-key")]
    assert missing["loader"] == "automodel" and "lacks 1 of the model's tensors" in missing["reason"]
    assert missing["bit_identical"] and missing["same_output"]
    assert "weights not mapped (" in stderr and "lacks 1 of the model's tensors" in stderr
    chosen = by_case[("streaming_asr", "automodel-chosen")]
    assert chosen["loader"] == "automodel" and chosen["weights_file"] is None and chosen["bit_identical"]
