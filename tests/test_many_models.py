"""Five models of four kinds in one server (two punctuation models, the streaming ASR, an offline `asr` model and
the real VAD), each loaded, used, counted and unloaded on its own; every kind's routes, OIP metadata and OpenAPI
entries; the `asr` kind's timestamps, sentences, hotwords and VAD split on FunASR's example recording."""

from __future__ import annotations

import falcon.testing
import pytest

from api.app import create_app
from api.oip.signatures import SIGNATURES
from api.seed.routes import KIND_ROUTES, kind_routes
from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of
from supervisor.config import load_config, with_defaults, with_models
from wire.model_config import ModelConfig
from supervisor.kinds import KINDS
from tests.helpers import alive, settled_unique_mb, speechlike_pcm

WAV = {"Content-Type": "audio/wav"}
PCM = {"Content-Type": "audio/L16; rate=16000"}
FIVE = ["streaming_asr", "punctuation", "vad", "punc-b", "offline"]


@pytest.fixture(scope="module")
def five(cache_dir):
    """One supervisor for the module (its models are unloaded after each test by `client`)."""
    from supervisor.core import Supervisor

    demo = load_config("demo")
    config = with_defaults(with_models(demo, **{"punc-b": ModelConfig(kind="punctuation", source="generated:tiny"),
                                                "offline": ModelConfig(kind="asr", source="generated:tiny")}))
    sup = Supervisor(config, cache_dir / "five")
    sup.start()
    yield sup
    sup.close()


@pytest.fixture
def client(five):
    five.unload("all")
    yield falcon.testing.TestClient(create_app(five))
    five.unload("all")


@pytest.fixture(scope="module")
def vad_example(cache_dir):
    return example("vad_example.wav", cache_dir)


def info(client, detailed: bool = False) -> dict:
    return client.simulate_post("/model/info", json={"detailed": detailed}).json["available_models"]


def test_five_models_each_load_serve_unload_and_count_on_their_own(client):
    models = info(client)
    assert list(models) == FIVE
    assert {m: v["kind"] for m, v in models.items()} == {"streaming_asr": "streaming_asr", "punctuation": "punctuation",
                                                        "vad": "vad", "punc-b": "punctuation", "offline": "asr"}
    for name in FIVE:
        loaded = client.simulate_post("/model/load", json={"model_type": name, "async_load": False})
        assert loaded.status_code == 200 and loaded.json["model_type"] == name, loaded.json
    pids = {m: v["pid"] for m, v in info(client).items()}
    assert len(set(pids.values())) == 5 and all(alive(p) for p in pids.values())  # a process each

    assert client.simulate_post("/punctuation?model=punc-b", json={"text": "你好"}).json["model_type"] == "punc-b"
    assert client.simulate_post("/punctuation", json={"text": "你好"}).json["model_type"] == "punctuation"
    audio = speechlike_pcm(2.0)
    for name in ("offline", "streaming_asr"):
        resp = client.simulate_post(f"/asr/transcribe?model={name}&punctuate=false&vad=false", body=audio,
                                    headers=PCM)
        assert resp.status_code == 200 and resp.json["model"] == name, resp.json
    assert client.simulate_post("/vad?model=vad", body=audio, headers=PCM).status_code == 200
    counted = info(client)
    assert {m: counted[m]["total_requests"] - models[m]["total_requests"] for m in FIVE} == {m: 1 for m in FIVE}

    for name in FIVE:  # one at a time: the others keep serving
        # the detailed figure is refreshed every second off the request path: wait until it has caught up with the
        # process as it is now (the VAD grew 5.1 MB serving its request, after the last refresh, in a clean clone)
        said = settled_unique_mb(client, name, pids[name])
        unloaded = client.simulate_delete(f"/model/unload/{name}").json
        assert unloaded["memory_freed_mb"] == pytest.approx(said, abs=5)
        assert unloaded["memory_freed_mb"] > 0 and not alive(pids[name])
        assert name not in unloaded["models_remaining"]
        assert set(unloaded["models_remaining"]) == set(FIVE[FIVE.index(name) + 1:])


def test_a_wrong_kind_or_an_unknown_model_is_a_clear_error(client):
    wrong = client.simulate_post("/punctuation?model=vad", json={"text": "你好"})
    assert wrong.status_code == 400 and wrong.json["error_code"] == "INVALID_REQUEST"
    assert "vad model" in wrong.json["details"] and wrong.json["available_models"] == ["punctuation", "punc-b"]
    unknown = client.simulate_post("/asr/transcribe?model=nope", body=speechlike_pcm(0.5), headers=PCM)
    assert unknown.status_code == 404 and unknown.json["error_code"] == "MODEL_NOT_FOUND"
    assert info(client)["punctuation"]["status"] == "unloaded"  # nothing was started by a bad request


def test_every_kind_has_its_routes_oip_metadata_and_openapi_entries(client, five):
    paths = client.simulate_get("/openapi.json").json["paths"]
    for kind in KINDS.values():
        mine = [route.path for route in kind_routes(kind, KIND_ROUTES[kind.name])]
        assert mine and all(p in paths for p in mine), (kind.name, mine)
        if kind.streams:
            assert f"{KIND_ROUTES[kind.name]}/streams/{{stream_id}}/audio" in mine
    for name, view in info(client).items():
        meta = client.simulate_get(f"/v2/models/{name}").json
        kind = KINDS[view["kind"]]
        assert [i["name"] for i in meta["inputs"]] == [t.name for t in SIGNATURES[kind.name].inputs]
        assert [o["name"] for o in meta["outputs"]] == [t.name for t in SIGNATURES[kind.name].outputs]
    assert {m["name"] for m in client.simulate_post("/v2/repository/index").json} == set(FIVE)
    assert paths["/v2/models/{model_name}"]["get"]["parameters"][0]["schema"]["enum"] == FIVE
    metrics = client.simulate_get("/metrics").text
    assert all(f'model="{name}"' in metrics for name in FIVE)


def test_the_asr_kind_answers_rising_timestamps_inside_the_audio_and_sentences(client):
    audio = speechlike_pcm(3.0, seed=3)
    resp = client.simulate_post("/asr/transcribe?model=offline&vad=false", body=audio, headers=PCM).json
    stamps = resp["timestamp"]
    assert stamps and resp["text"], resp
    assert all(0 <= start < end <= resp["audio_ms"] for start, end in stamps)
    assert all(a[1] <= b[0] for a, b in zip(stamps, stamps[1:]))  # each token after the one before
    sentences = resp["sentence_info"]
    assert sentences and [t for s in sentences for t in map(list, s["timestamp"])] == stamps
    assert "".join(s["text"] for s in sentences) == resp["punctuated_text"]  # punctuated by the default model
    assert all(s["start"] == s["timestamp"][0][0] and s["end"] == s["timestamp"][-1][1] for s in sentences)


def test_hotwords_reach_the_model(client):
    audio = speechlike_pcm(3.0, seed=5)
    plain = client.simulate_post("/asr/transcribe?model=offline&vad=false&punctuate=false", body=audio,
                                 headers=PCM).json["text"]
    biased = client.simulate_post("/asr/transcribe?model=offline&vad=false&punctuate=false&hotwords=一丁 七万",
                                  body=audio, headers=PCM).json["text"]
    assert plain and biased != plain  # SeACo-Paraformer's bias decoder changed what it heard


def test_the_asr_kind_splits_funasrs_example_on_the_vads_segments(client, vad_example):
    before = info(client)["offline"]["total_requests"]
    found = client.simulate_post("/vad", body=vad_example.read_bytes(), headers=WAV).json["segments"]
    assert found == VAD_EXAMPLE_SEGMENTS
    resp = client.simulate_post("/asr/transcribe?vad=true", body=vad_example.read_bytes(), headers=WAV).json
    assert resp["model"] == "offline"  # the asr model is /asr/transcribe's default once one is configured
    assert [[s["start_ms"], s["end_ms"]] for s in resp["segments"]] == VAD_EXAMPLE_SEGMENTS
    stamps = resp["timestamp"]
    for start, end in stamps:  # each token's time lies inside the VAD segment it was heard in
        assert any(s <= start and end <= e for s, e in VAD_EXAMPLE_SEGMENTS), (start, end)
    assert all(a[0] <= b[0] for a, b in zip(stamps, stamps[1:]))
    assert len(pcm_of(vad_example)) / 32 >= stamps[-1][1]
    views = info(client)
    assert views["offline"]["total_requests"] == before + 12  # one request per segment
    assert views["streaming_asr"]["status"] == "unloaded"


def test_a_recording_to_the_offline_model_over_oip_has_timestamps(client):
    body = {"inputs": [{"name": "audio", "datatype": "INT16", "shape": [16000 * 2],
                        "data": list(memoryview(speechlike_pcm(2.0)).cast("h"))}],
            "parameters": {"vad": False}}
    resp = client.simulate_post("/v2/models/offline/infer", json=body).json
    outputs = {o["name"]: o for o in resp["outputs"]}
    assert outputs["timestamps"]["shape"][1] == 2 and outputs["timestamps"]["shape"][0] > 0
    assert outputs["text"]["data"][0]


def test_bicif_paraformer_and_sensevoice_are_sources_of_the_asr_kind(make_supervisor):
    """Both load through the same engine class: BiCif-Paraformer with timestamps, SenseVoiceSmall with text."""
    sup = make_supervisor()
    client = falcon.testing.TestClient(create_app(sup))
    for name, source in (("bicif", "generated:bicif-tiny"), ("sensevoice", "generated:sensevoice-tiny")):
        put = client.simulate_put(f"/model/registry/{name}", body=f'{{"kind": "asr", "source": "{source}"}}')
        assert put.status_code == 201, put.json
    try:
        audio = speechlike_pcm(2.0, seed=1)
        bicif = client.simulate_post("/asr/transcribe?model=bicif&vad=false", body=audio, headers=PCM).json
        assert bicif["text"] and len(bicif["timestamp"]) == len(bicif["text"]), bicif
        sense = client.simulate_post("/asr/transcribe?model=sensevoice&vad=false", body=audio, headers=PCM).json
        assert sense["model"] == "sensevoice" and sense["text"] and sense["timestamp"] is None, sense
        details = client.simulate_post("/model/info", json={"detailed": True}).json["available_models"]
        assert details["sensevoice"]["details"]["resolved_source"].endswith("asr-sensevoice-tiny")
    finally:
        for name in ("bicif", "sensevoice"):
            client.simulate_delete(f"/model/unload/{name}")
            assert client.simulate_delete(f"/model/registry/{name}").status_code == 200
