"""Using the models over HTTP: punctuation, streams, transcription, counters, cold starts, idle unloading
(its timing rules are tested in virtual time in test_arbiter_rules.py)."""

from __future__ import annotations

from flows.service import Flows

import falcon.testing
import pytest

from api.app import create_app
from supervisor.memory import private_dirty_mb
from tests.helpers import speechlike_pcm, wait_for, wav_bytes

PCM = {"Content-Type": "audio/L16; rate=16000"}
WAV = {"Content-Type": "audio/wav"}


def open_stream(client, **body) -> str:
    resp = client.simulate_post("/asr/streams", json=body)
    assert resp.status_code == 201, resp.json
    assert resp.json["sample_rate"] == 16000 and resp.json["chunk_ms"] == 600 and resp.json["expires_in_s"] > 0
    return resp.json["stream_id"]


def model_info(client, model_id: str, **body) -> dict:
    return client.simulate_post("/model/info", json=body).json["available_models"][model_id]


def test_punctuation_cold_starts_then_serves_warm(client):
    first = client.simulate_post("/punctuation", json={"text": "今天天气很好我们去公园玩吧"})
    assert first.status_code == 200, first.json
    assert first.json["cold_start"] is True and first.headers["X-Cold-Start"] == "1"
    assert first.json["model_type"] == "punctuation" and first.json["processing_ms"] > 0
    model_ms = float(first.headers["Server-Timing"].removeprefix("model;dur="))
    assert 0 < model_ms < first.json["processing_ms"]
    text = first.json["text"]
    assert len(text) > len("今天天气很好我们去公园玩吧") and text.startswith("今天")
    second = client.simulate_post("/punctuation", json={"text": "今天天气很好我们去公园玩吧"})
    assert second.json["cold_start"] is False and "X-Cold-Start" not in second.headers
    assert second.json["text"] == text


def test_stream_in_uneven_pieces_matches_transcribe(client):
    pcm = speechlike_pcm(5.0)
    whole = client.simulate_post("/asr/transcribe", body=wav_bytes(pcm), headers=WAV,
                                 params={"punctuate": "false"})
    assert whole.status_code == 200, whole.json
    assert whole.json["audio_ms"] == 5000.0 and whole.json["punctuated_text"] is None
    assert whole.json["rtf"] > 0 and whole.json["text"]

    stream_id = open_stream(client)
    partial = ""
    for start, end in ((0, 3001 * 2), (3001 * 2, 20000 * 2), (20000 * 2, 20100 * 2), (20100 * 2, len(pcm))):
        resp = client.simulate_post(f"/asr/streams/{stream_id}/audio", body=pcm[start:end], headers=PCM)
        assert resp.status_code == 200, resp.json
        assert resp.json["partial_text"] == partial + resp.json["text"]
        partial = resp.json["partial_text"]
    final = client.simulate_post(f"/asr/streams/{stream_id}/finish")
    assert final.status_code == 200
    assert final.json["text"] == whole.json["text"]
    gone = client.simulate_post(f"/asr/streams/{stream_id}/audio", body=pcm[:3200], headers=PCM)
    assert gone.status_code == 404 and gone.json["error_code"] == "STREAM_NOT_FOUND"


def test_punctuated_stream_and_transcription(client):
    pcm = speechlike_pcm(2.0, seed=3)
    stream_id = open_stream(client, punctuate=True)
    client.simulate_post(f"/asr/streams/{stream_id}/audio", body=pcm,
                         headers={"Content-Type": "application/octet-stream"})
    final = client.simulate_post(f"/asr/streams/{stream_id}/finish").json
    assert final["punctuated_text"] and final["punctuated_text"] != final["text"]
    whole = client.simulate_post("/asr/transcribe", body=pcm, headers=PCM).json
    assert whole["text"] == final["text"] and whole["punctuated_text"] == final["punctuated_text"]


def test_counters_move_and_success_rate_drops_after_a_failure(client):
    before = model_info(client, "streaming_asr", include_metrics=True)
    client.simulate_post("/asr/transcribe", body=speechlike_pcm(1.0), headers=PCM)
    after_ok = model_info(client, "streaming_asr", include_metrics=True)
    assert after_ok["total_requests"] == before["total_requests"] + 1
    assert after_ok["last_used"] is not None and after_ok["metrics"]["latency"]["p50_ms"] > 0
    bad = client.simulate_post("/asr/transcribe", body=b"\x01\x02\x03", headers=PCM)
    assert bad.status_code == 400 and bad.json["error_code"] == "INVALID_REQUEST"
    after_bad = model_info(client, "streaming_asr", include_metrics=True)
    assert after_bad["total_requests"] == after_ok["total_requests"] + 1
    assert after_bad["success_rate"] < after_ok["success_rate"]
    assert after_bad["metrics"]["requests_by_outcome"]["invalid"] >= 1


def test_the_cpu_a_model_spends_per_second_of_audio_is_measured_by_its_process(client):
    before = model_info(client, "streaming_asr", include_metrics=True)["metrics"]
    assert client.simulate_post("/asr/transcribe", body=speechlike_pcm(3.0), headers=PCM,
                                params={"punctuate": "false"}).status_code == 200
    after = model_info(client, "streaming_asr", include_metrics=True)["metrics"]
    assert after["audio_s"] - before["audio_s"] == pytest.approx(3.0, abs=0.01)   # every piece's audio counted
    assert after["cpu_s"] > before["cpu_s"] and 0 < after["cpu_per_audio_s"] < 5
    assert after["batches"] > before["batches"] and after["mean_batch"] >= 1


def test_unloading_under_an_open_stream_loses_it(client):
    stream_id = open_stream(client)
    assert client.simulate_post(f"/asr/streams/{stream_id}/audio", body=speechlike_pcm(0.7),
                                headers=PCM).status_code == 200
    client.simulate_delete("/model/unload/streaming_asr")
    lost = client.simulate_post(f"/asr/streams/{stream_id}/audio", body=speechlike_pcm(0.7), headers=PCM)
    assert lost.status_code == 410 and lost.json["error_code"] == "STREAM_LOST"
    again = client.simulate_post(f"/asr/streams/{stream_id}/finish")
    assert again.status_code == 404


def test_abort_ends_a_stream(client):
    stream_id = open_stream(client)
    assert client.simulate_delete(f"/asr/streams/{stream_id}").json["success"] is True
    assert client.simulate_post(f"/asr/streams/{stream_id}/finish").json["error_code"] == "STREAM_NOT_FOUND"
    assert client.simulate_delete(f"/asr/streams/{stream_id}").status_code == 404


def test_bad_inputs_each_get_their_code(client):
    stream_id = open_stream(client)
    cases = [
        ("/asr/streams/" + stream_id + "/audio", b"", PCM, 400, "INVALID_REQUEST"),
        ("/asr/streams/" + stream_id + "/audio", b"\x00" * 33, PCM, 400, "INVALID_REQUEST"),
        ("/asr/streams/" + stream_id + "/audio", b"\x00" * 32, {"Content-Type": "text/plain"}, 415,
         "UNSUPPORTED_MEDIA"),
        ("/asr/streams/" + stream_id + "/audio", b"\x00" * 32, {"Content-Type": "audio/L16; rate=8000"}, 415,
         "UNSUPPORTED_MEDIA"),
        ("/asr/streams/st_nope/audio", b"\x00" * 32, PCM, 404, "STREAM_NOT_FOUND"),
        ("/asr/transcribe", b"RIFF....not a wav", WAV, 400, "INVALID_REQUEST"),
        ("/asr/transcribe", b"{}", {"Content-Type": "application/json"}, 415, "UNSUPPORTED_MEDIA"),
        ("/punctuation", b'{"text": ""}', {}, 400, "INVALID_REQUEST"),
        ("/punctuation", b'{"text": "\xff\xfe"}', {}, 400, "INVALID_REQUEST"),
        ("/punctuation", b'{"txt": "hello"}', {}, 400, "INVALID_REQUEST"),
        ("/punctuation", b'{"text": "' + "字".encode() * 30000 + b'"}', {}, 413, "PAYLOAD_TOO_LARGE"),
    ]
    for path, body, headers, status, code in cases:
        resp = client.simulate_post(path, body=body, headers=headers)
        assert (resp.status_code, resp.json["error_code"]) == (status, code), (path, headers, resp.json)
        assert resp.json["success"] is False and resp.json["details"]


def test_oversized_audio_is_413_before_the_model_sees_it(make_supervisor):
    small = make_supervisor(server={"max_audio_mb": 0.01})
    client = falcon.testing.TestClient(create_app(small))
    resp = client.simulate_post("/asr/transcribe", body=speechlike_pcm(1.0), headers=PCM)
    assert resp.status_code == 413 and resp.json["error_code"] == "PAYLOAD_TOO_LARGE"
    assert small.view("streaming_asr").status == "unloaded"


def test_autoload_off_answers_model_not_ready(make_supervisor):
    manual = make_supervisor(punctuation={"autoload": False})
    client = falcon.testing.TestClient(create_app(manual))
    resp = client.simulate_post("/punctuation", json={"text": "你好"})
    assert resp.status_code == 503 and resp.json["error_code"] == "MODEL_NOT_READY"
    assert int(resp.headers["Retry-After"]) >= 1
    client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False})
    assert client.simulate_post("/punctuation", json={"text": "你好"}).status_code == 200


def test_keep_alive_zero_unloads_right_after_each_request(make_supervisor):
    sup = make_supervisor(punctuation={"keep_alive_s": 0})
    client = falcon.testing.TestClient(create_app(sup))
    assert client.simulate_post("/punctuation", json={"text": "你好世界"}).json["cold_start"] is True
    wait_for(lambda: sup.view("punctuation").status == "unloaded", timeout=5)
    assert client.simulate_post("/punctuation", json={"text": "你好世界"}).json["cold_start"] is True


def test_idle_streams_expire(make_supervisor):
    sup = make_supervisor(server={"stream_expiry_s": 0.5})
    client = falcon.testing.TestClient(create_app(sup))
    stream_id = open_stream(client)
    wait_for(lambda: sup.view("streaming_asr").details.open_streams == 0, timeout=5)
    resp = client.simulate_post(f"/asr/streams/{stream_id}/audio", body=speechlike_pcm(0.6), headers=PCM)
    assert resp.status_code == 404 and resp.json["error_code"] == "STREAM_NOT_FOUND"


def test_preload_loads_required_first_and_a_failed_required_model_is_reported(make_supervisor, tmp_path):
    sup = make_supervisor(punctuation={"preload": True, "priority": 1},
                          streaming_asr={"preload": True, "required": True,
                                         "source": str(tmp_path / "missing")})
    client = falcon.testing.TestClient(create_app(sup))
    wait_for(lambda: sup.view("punctuation").status == "loaded", timeout=60)
    asr = model_info(client, "streaming_asr")
    assert asr["status"] == "failed" and asr["required"] is True and "does not exist" in asr["last_error"]
    assert client.simulate_post("/punctuation", json={"text": "你好"}).status_code == 200


def test_asr_answers_keep_their_text_when_punctuation_is_unavailable(make_supervisor):
    sup = make_supervisor(punctuation={"autoload": False})  # not loaded, and requests may not load it
    client = falcon.testing.TestClient(create_app(sup))
    whole = client.simulate_post("/asr/transcribe", body=speechlike_pcm(2.0), headers=PCM)
    assert whole.status_code == 200 and whole.json["text"] and whole.json["punctuated_text"] is None
    assert "MODEL_NOT_READY" in whole.json["warnings"][0]
    stream_id = client.simulate_post("/asr/streams", json={"punctuate": True}).json["stream_id"]
    client.simulate_post(f"/asr/streams/{stream_id}/audio", body=speechlike_pcm(2.0), headers=PCM)
    finished = client.simulate_post(f"/asr/streams/{stream_id}/finish")
    assert finished.status_code == 200 and finished.json["text"] == whole.json["text"]
    assert finished.json.get("punctuated_text") is None and "punctuation unavailable" in finished.json["warnings"][0]


def test_finished_streams_give_their_memory_back_to_the_model_process(sup):
    def streams(count: int) -> None:
        for _ in range(count):
            stream_id = Flows(sup).open_stream(punctuate=False).stream_id
            Flows(sup).feed(stream_id, speechlike_pcm(1.2))
            Flows(sup).feed(stream_id, b"", is_final=True)
    streams(20)  # warm-up: first-use allocations
    pid = sup.view("streaming_asr").pid
    before = private_dirty_mb(pid)
    streams(200)
    grown = private_dirty_mb(pid) - before
    print(f"Private_Dirty after 200 streams: {grown:+.1f} MB")
    assert sup.view("streaming_asr").pid == pid and grown < 10
