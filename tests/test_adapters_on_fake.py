"""Each protocol adapter on the facade's fake (tests/fake_facade.py): what it parses, what it asks of the flows
and how it answers, in milliseconds and without a model process. The same adapters on real processes and with
the protocols' own clients are tested in test_open_inference, test_openai_api and test_funasr_ws."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import wave

import falcon.testing
import pytest
from websockets.exceptions import ConnectionClosedOK

from api.app import create_app
from api.common.deps import Deps
from api.funasr.session import FunasrSession
from api.openai.realtime import RealtimeTranscription
from supervisor.orders import Feed, OpenStream, Punctuation, Recording
from tests.fake_facade import FakeSupervisor

SECOND = b"\1\0" * 16000


@pytest.fixture
def fake() -> FakeSupervisor:
    return FakeSupervisor()


@pytest.fixture
def client(fake) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(fake))


def wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1), file.setsampwidth(2), file.setframerate(16000)
        file.writeframes(pcm)
    return out.getvalue()


def test_oip_infer_of_texts_is_one_punctuation_order_each(client, fake):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["你好", "再见"]}]}
    resp = client.simulate_post("/v2/models/punctuation/infer", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["outputs"][0]["data"] == ["你好。", "再见。"]
    assert fake.orders == [Punctuation("punctuation", "你好"), Punctuation("punctuation", "再见")]


def test_oip_errors_take_the_protocols_shape(client, fake):
    resp = client.simulate_post("/v2/models/punctuation/infer", json={"inputs": []})
    assert resp.status_code == 400 and set(resp.json) == {"error"}
    assert fake.orders == []


def test_oip_vad_infer_answers_the_segments(client):
    samples = list(range(0, 32000, 2))[:16000]
    body = {"inputs": [{"name": "audio", "datatype": "INT16", "shape": [16000], "data": samples}]}
    resp = client.simulate_post("/v2/models/vad/infer", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["outputs"][0]["data"] == [100, 1000] and resp.json["outputs"][0]["shape"] == [1, 2]


def test_openai_transcription_splits_on_the_vad_and_answers_text(client, fake):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav(SECOND * 2) + f"\r\n--{boundary}--\r\n".encode()
    resp = client.simulate_post("/v1/audio/transcriptions", body=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 200, resp.text
    assert [type(o) for o in fake.orders] == [Recording, Recording, Punctuation]
    assert resp.json["text"] == fake.orders[2].text + "。"


def test_openai_errors_take_the_protocols_shape(client):
    resp = client.simulate_post("/v1/audio/transcriptions", body=b"x", headers={"Content-Type": "text/plain"})
    assert resp.status_code in (400, 415) and set(resp.json) == {"error"} and resp.json["error"]["code"]


class FakeSocket:
    """The server side of a WebSocket connection, scripted: `said` is what the client sends, `heard` what the
    server answered (text frames as JSON). Once the script is spent, the client waits for `until` answers and
    closes."""

    def __init__(self, said: list, until) -> None:
        self.script, self.until, self.heard = list(said), until, []
        self.arrived = asyncio.Event()
        self.closed: tuple | None = None
        self.request = None

    async def recv(self):
        if self.script:
            return self.script.pop(0)
        while not self.until(self.heard):
            self.arrived.clear()
            await self.arrived.wait()
        raise ConnectionClosedOK(None, None)

    async def send(self, message: str) -> None:
        self.heard.append(json.loads(message))
        self.arrived.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.arrived.set()


def converse(session) -> None:
    async def run() -> None:
        try:
            await asyncio.wait_for(session.run(), 10)
        except ConnectionClosedOK:
            pass
    asyncio.run(run())


def test_a_funasr_2pass_session_on_the_flows(fake):
    socket = FakeSocket([json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": "t"}), SECOND,
                         json.dumps({"is_speaking": False})],
                        until=lambda heard: any(a.get("is_final") for a in heard))
    converse(FunasrSession(socket, Deps(fake)))
    online = [a for a in socket.heard if a["mode"] == "2pass-online"]
    final = socket.heard[-1]
    assert online and online[0]["text"] == "s600" and online[0]["wav_name"] == "t"
    assert final["mode"] == "2pass-offline" and final["is_final"] is True and final["text"].endswith("。")
    feeds = [o for o in fake.orders if isinstance(o, Feed)]
    assert {f.model_id for f in feeds} == {"vad", "streaming_asr"}
    assert fake.streams == {} and fake.live_sessions == 0   # the session gave back what it held


def test_a_funasr_session_with_a_bad_message_is_answered_and_closed(fake):
    socket = FakeSocket([json.dumps({"mode": "sideways"}), SECOND], until=lambda heard: True)
    converse(FunasrSession(socket, Deps(fake)))
    assert socket.heard[-1]["error"]["code"] == "INVALID_REQUEST" and socket.closed[0] == 1003
    assert not any(isinstance(o, OpenStream) for o in fake.orders)


def test_a_realtime_commit_answers_committed_then_completed(fake):
    pcm24k = b"\1\0" * 24000
    socket = FakeSocket([json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
                            "input": {"turn_detection": None}}}}),
                         json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm24k).decode()}),
                         json.dumps({"type": "input_audio_buffer.commit"})],
                        until=lambda heard: any(e["type"].endswith("transcription.completed") for e in heard))
    converse(RealtimeTranscription(socket, Deps(fake), None))
    kinds = [e["type"] for e in socket.heard]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert kinds.index("input_audio_buffer.committed") < kinds.index(
        "conversation.item.input_audio_transcription.completed")
    completed = socket.heard[-1]
    assert completed["transcript"].endswith("。") and abs(completed["usage"]["seconds"] - 1.0) < 0.01  # resampled
