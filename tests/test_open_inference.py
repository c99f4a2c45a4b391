"""The Open Inference Protocol (KServe v2) and Triton's model-repository extension, driven by Triton's own
client (`tritonclient.http`) against a real server, and its error shapes through the app."""

from __future__ import annotations

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of
from tests.helpers import InProcessServer, serving, unload_everything

WAV = {"Content-Type": "audio/wav"}
TEXTS = ["今天天气不错我们去公园散步吧", "你好"]


@pytest.fixture(scope="module")
def live(cache_dir, supervisor):
    """One server for the module; every test leaves it with no model loaded."""
    yield from serving(InProcessServer(cache_dir))


@pytest.fixture
def triton_client(live):
    yield triton.InferenceServerClient(live.url.removeprefix("http://"), network_timeout=120)
    unload_everything(live)


@pytest.fixture(scope="module")
def recordings(cache_dir):
    return {name: example(f"{name}.wav", cache_dir) for name in ("vad_example", "asr_example")}


def audio_input(samples: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("audio", list(samples.shape), "INT16")
    return tensor.set_data_from_numpy(samples, binary_data=binary)


def wav_input(wav: bytes) -> triton.InferInput:
    return triton.InferInput("audio", [1], "BYTES").set_data_from_numpy(np.array([wav], dtype=object))


def texts(result: triton.InferResult, name: str) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy(name).reshape(-1)]


def test_health_metadata_and_the_model_repository(triton_client, live):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    server = triton_client.get_server_metadata()
    assert server["name"] == "funasr-supervisor" and "model_repository" in server["extensions"]
    index = {m["name"]: m for m in triton_client.get_model_repository_index()}
    assert set(index) == {"streaming_asr", "punctuation", "vad"}
    assert index["punctuation"]["state"] == "UNAVAILABLE" and index["punctuation"]["reason"]
    assert not triton_client.is_model_ready("punctuation")

    triton_client.load_model("punctuation")
    assert triton_client.is_model_ready("punctuation")
    ready = [m["name"] for m in triton_client.get_model_repository_index(query_params={}) if m["state"] == "READY"]
    assert ready == ["punctuation"]
    info = requests.get(f"{live.url}/model/info", timeout=10).json()["available_models"]["punctuation"]
    assert info["status"] == "loaded" and info["memory_usage_mb"] > 0   # the same lifecycle as /model/load

    metadata = triton_client.get_model_metadata("streaming_asr")
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("audio", "INT16")]
    assert [t["name"] for t in metadata["outputs"]] == ["text", "punctuated_text"]
    version = metadata["versions"][0]
    assert triton_client.get_model_metadata("vad", model_version=version)["outputs"][0]["shape"] == [-1, 2]
    with pytest.raises(InferenceServerException) as wrong_version:
        triton_client.get_model_metadata("vad", model_version="999")
    assert wrong_version.value.status() == "404" and "version" in wrong_version.value.message()

    triton_client.unload_model("punctuation")
    assert not triton_client.is_model_ready("punctuation")
    assert requests.get(f"{live.url}/model/info", timeout=10).json()["available_models"]["punctuation"][
        "status"] == "unloaded"
    with pytest.raises(InferenceServerException) as unknown:
        triton_client.load_model("whisper")
    assert unknown.value.status() == "404" and "whisper" in unknown.value.message()


def test_model_config_in_tritons_shape_for_perf_analyzer(triton_client):
    """What tritonclient's `get_model_config` (and perf_analyzer, which reads it first) gets, loaded or not."""
    punctuation = triton_client.get_model_config("punctuation")
    assert punctuation["name"] == "punctuation" and punctuation["max_batch_size"] == 0
    assert punctuation["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert punctuation["dynamic_batching"] == {"preferred_batch_size": [8], "max_queue_delay_microseconds": 0}
    assert punctuation["instance_group"][0]["kind"] == "KIND_CPU" and "sequence_batching" not in punctuation
    streaming = triton_client.get_model_config("streaming_asr")
    assert streaming["input"] == [{"name": "audio", "data_type": "TYPE_INT16", "dims": [-1]}]
    assert [o["data_type"] for o in streaming["output"]] == ["TYPE_STRING", "TYPE_STRING"]
    assert streaming["sequence_batching"]["oldest"]["max_candidate_sequences"] == 1  # torch: one stream at once
    assert streaming["sequence_batching"]["max_sequence_idle_microseconds"] > 0
    version = triton_client.get_model_metadata("vad")["versions"][0]
    vad = triton_client.get_model_config("vad", model_version=version)
    assert vad["output"] == [{"name": "segments", "data_type": "TYPE_INT32", "dims": [-1, 2]}]
    with pytest.raises(InferenceServerException) as unknown:
        triton_client.get_model_config("whisper")
    assert unknown.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_kserves_own_rest_client_infers_unchanged(live, triton_client, recordings, binary):
    """KServe's Python SDK (`InferenceRESTClient`): its bodies carry `id` and `model_name`, JSON or binary."""
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def infer(model: str, tensor: InferInput, body_model: str | None = None):
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
        try:
            return await client.infer(live.url, InferRequest(model_name=body_model or model, infer_inputs=[tensor],
                                                             request_id="kserve-1"), model_name=model)
        finally:
            await client.close()

    text = InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=binary)
    punctuated = asyncio.run(infer("punctuation", text))
    assert punctuated.id == "kserve-1" and punctuated.model_name == "punctuation"
    ours = [requests.post(f"{live.url}/punctuation", json={"text": t}, timeout=60).json()["text"]
            for t in TEXTS]
    assert [v.decode() if isinstance(v, bytes) else v for v in punctuated.outputs[0].as_numpy().reshape(-1)] == ours
    samples = np.frombuffer(pcm_of(recordings["asr_example"]), dtype="<i2")
    audio = InferInput("audio", list(samples.shape), "INT16")
    audio.set_data_from_numpy(samples, binary_data=binary)
    segments = asyncio.run(infer("vad", audio)).outputs[0].as_numpy()
    assert segments.shape[1] == 2 and len(segments) >= 1
    with pytest.raises(Exception) as other:
        asyncio.run(infer("punctuation", text, body_model="vad"))
    assert "400" in str(other.value) and "another model" in str(other.value)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_on_each_model_answers_what_our_own_routes_answer(triton_client, live, recordings, binary):
    punctuated = [requests.post(f"{live.url}/punctuation", json={"text": t}, timeout=60).json()["text"]
                  for t in TEXTS]
    text_input = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text_input.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=binary)
    result = triton_client.infer("punctuation", [text_input],
                                 outputs=[triton.InferRequestedOutput("text", binary_data=binary)])
    assert texts(result, "text") == punctuated

    wav = recordings["asr_example"].read_bytes()
    expected = requests.post(f"{live.url}/asr/transcribe?vad=false", data=wav, headers=WAV, timeout=60).json()
    samples = np.frombuffer(pcm_of(recordings["asr_example"]), dtype=np.int16)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("text", "punctuated_text")]
    result = triton_client.infer("streaming_asr", [audio_input(samples, binary)], outputs=outputs,
                                 parameters={"vad": False})
    assert texts(result, "text") == [expected["text"]] and expected["text"]
    assert texts(result, "punctuated_text") == [expected["punctuated_text"]]

    vad_wav = recordings["vad_example"].read_bytes() if binary else wav
    segments = requests.post(f"{live.url}/vad", data=vad_wav, headers=WAV, timeout=60).json()["segments"]
    vad_input = wav_input(vad_wav) if binary else audio_input(samples, binary=False)
    result = triton_client.infer("vad", [vad_input],
                                 outputs=[triton.InferRequestedOutput("segments", binary_data=binary)])
    assert result.as_numpy("segments").tolist() == segments
    assert segments == (VAD_EXAMPLE_SEGMENTS if binary else [[150, 4180]])


def test_a_sequence_streams_a_recording_to_the_same_text_as_transcribe(triton_client, live, recordings):
    wav = recordings["asr_example"].read_bytes()
    expected = requests.post(f"{live.url}/asr/transcribe?vad=false&punctuate=false", data=wav, headers=WAV,
                             timeout=60).json()["text"]
    samples = np.frombuffer(pcm_of(recordings["asr_example"]), dtype=np.int16)
    pieces = np.array_split(samples, 7)   # uneven pieces, not 600 ms chunks
    so_far = []
    for i, piece in enumerate(pieces):
        result = triton_client.infer("streaming_asr", [audio_input(piece)], sequence_id=1001,
                                     sequence_start=i == 0, sequence_end=i == len(pieces) - 1)
        so_far.append(texts(result, "text")[0])
    assert so_far[-1] == expected and expected
    assert all(later.startswith(earlier) for earlier, later in zip(so_far, so_far[1:]))

    with pytest.raises(InferenceServerException) as ended:   # the sequence ended with its last piece
        triton_client.infer("streaming_asr", [audio_input(pieces[0])], sequence_id=1001)
    assert ended.value.status() == "404" and "sequence_start" in ended.value.message()
    streams = requests.get(f"{live.url}/metrics", timeout=10).text
    assert 'funasr_model_open_streams{model="streaming_asr"} 0.0' in streams


def post_infer(client, model: str, body: dict | bytes, headers: dict | None = None):
    if isinstance(body, dict):
        return client.simulate_post(f"/v2/models/{model}/infer", json=body)
    return client.simulate_post(f"/v2/models/{model}/infer", body=body, headers=headers)


def test_protocol_errors_use_its_shape_and_status(client):
    """Each bad request: `{"error": "..."}` with the status our error table gives, and nothing loaded is lost."""
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["你好"]}
    header = (b'{"inputs": [{"name": "audio", "shape": [4], "datatype": "INT16", '
              b'"parameters": {"binary_data_size": 8}}]}')
    assert post_infer(client, "punctuation", {"inputs": [text]}).status_code == 200
    nested = post_infer(client, "punctuation", {"inputs": [text | {"data": [[[["你好"]]]]}]})  # data may nest
    assert nested.json["outputs"][0]["data"] == post_infer(client, "punctuation", {"inputs": [text]}).json[
        "outputs"][0]["data"]
    cases = [
        (post_infer(client, "whisper", {"inputs": [text]}), 404, "whisper"),
        (post_infer(client, "punctuation", {"inputs": [text | {"shape": [2]}]}), 400, "shape"),
        (post_infer(client, "punctuation", {"inputs": [text | {"datatype": "FP32", "data": [1.0]}]}), 400, "BYTES"),
        (post_infer(client, "punctuation", {"inputs": [text | {"name": "audio"}]}), 400, "'text'"),
        (post_infer(client, "punctuation", {"inputs": [text], "outputs": [{"name": "logits"}]}), 400, "logits"),
        (post_infer(client, "punctuation", b"{not json"), 400, "JSON"),
        (post_infer(client, "punctuation", b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", '
                    b'"data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"), 400, "JSON"),   # deeper than msgspec goes
        (post_infer(client, "vad", {"inputs": [{"name": "audio", "shape": [3], "datatype": "INT16",
                                                "data": [1, 2, 70000]}]}), 400, "INT16"),
        (post_infer(client, "vad", header + bytes(10), {"Inference-Header-Content-Length": str(len(header))}),
         400, "binary"),
        (post_infer(client, "vad", b"{}", {"Inference-Header-Content-Length": "9"}), 400, "Length"),
        (post_infer(client, "streaming_asr", {"inputs": [{"name": "audio", "shape": [2], "datatype": "INT16",
                                                          "data": [0, 0]}],
                                              "parameters": {"sequence_id": "nope"}}), 404, "sequence_start"),
        (client.simulate_post("/v2/repository/models/punctuation/load",
                              json={"parameters": {"file:1/model.pt": "eA=="}}), 400, "file"),
        (client.simulate_post("/v2/repository/models/punctuation/load",   # it serves: not replaced under it
                              json={"parameters": {"config": "{}"}}), 409, "unload it"),
        (client.simulate_get("/v2/models/punctuation/versions/7"), 404, "version"),
        (client.simulate_get("/v2/nowhere"), 404, "route"),
        (post_infer(client, "punctuation", {"inputs": [text | {"data": ["字" * 30000]}]}), 413, "max_text_kb"),
    ]
    for resp, status, hint in cases:
        assert resp.status_code == status, (resp.status_code, resp.text)
        assert set(resp.json) == {"error"} and hint.lower() in resp.json["error"].lower(), resp.json
    ready = client.simulate_get("/v2/models/vad/ready")
    assert ready.status_code == 503 and "unloaded" in ready.json["error"]
    assert client.simulate_get("/v2/models/punctuation/ready").json == {"name": "punctuation", "ready": True}
    assert client.simulate_get("/model/nowhere/ready").json["error_code"] == "MODEL_NOT_FOUND"  # seed routes: envelope
