"""OpenAI's own SDK, unchanged, against a real server: every response format, timestamp granularities, streaming,
any audio format, wrong models and keys, translations refused, the model list."""

from __future__ import annotations

import io

import openai
import pytest
import requests

from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, reencoded as encode
from tests.helpers import DEMO_TABLES, configured_server, unload_everything
from tests.test_audio_formats import FORMATS

pytestmark = pytest.mark.long_running

KEY, ADMIN = "sk-test-0123456789abcdef", "sk-admin-0123456789abcdef"
CONFIG = DEMO_TABLES + f"""
[models.offline]
kind = "asr"
source = "generated:tiny"
[server]
api_keys = {{"{KEY}" = "user", "{ADMIN}" = "admin"}}
"""


@pytest.fixture(scope="module")
def live(cache_dir, tmp_path_factory, supervisor):
    for srv in configured_server(cache_dir, tmp_path_factory.mktemp("openai"), CONFIG):
        loaded = requests.post(f"{srv.url}/model/load", json={"model_type": "vad", "async_load": False},  # the VAD
                               headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300)  # splits; forkserver up
        assert loaded.status_code == 200, loaded.text
        yield srv


@pytest.fixture(autouse=True)
def unloaded_after(live):
    yield
    unload_everything(live, ADMIN)


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def recording(cache_dir) -> bytes:
    return example("vad_example.wav", cache_dir).read_bytes()


def transcribe(client: openai.OpenAI, data: bytes, name: str = "vad_example.wav", **options):
    return client.audio.transcriptions.create(model="whisper-1", file=(name, io.BytesIO(data)), **options)


def close_to_vad(segments) -> bool:
    got = [[round(s.start * 1000), round(s.end * 1000)] for s in segments]
    return len(got) == len(VAD_EXAMPLE_SEGMENTS) and all(
        abs(a - b) <= 40 for pair, want in zip(got, VAD_EXAMPLE_SEGMENTS) for a, b in zip(pair, want))


def test_every_response_format(client, recording):
    plain = transcribe(client, recording)
    assert plain.text and "，" in plain.text or "。" in plain.text  # the offline model's text, punctuated
    assert transcribe(client, recording, response_format="text").strip() == plain.text  # raw, not JSON-quoted
    srt = transcribe(client, recording, response_format="srt")
    assert srt.startswith("1\n00:00:00,070 --> 00:00:02,340\n") and srt.count(" --> ") == 12
    vtt = transcribe(client, recording, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.070 --> 00:00:02.340\n") and vtt.count(" --> ") == 12
    verbose = transcribe(client, recording, response_format="verbose_json",
                         timestamp_granularities=["word", "segment"])
    assert verbose.duration == pytest.approx(70.47, abs=0.02) and verbose.text == plain.text
    assert close_to_vad(verbose.segments) and "".join(s.text for s in verbose.segments) == plain.text
    words = verbose.words
    assert words and all(0 <= w.start <= w.end <= verbose.duration for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    only_words = transcribe(client, recording, response_format="verbose_json", timestamp_granularities=["word"])
    assert only_words.words and not getattr(only_words, "segments", None)


def test_any_audio_format_gives_the_same_segments_and_lossless_the_same_text(client, recording):
    reference = transcribe(client, recording, response_format="verbose_json")
    for container, codec, rate, layout, _ in FORMATS:
        data = encode(recording, container, codec, rate, layout)
        answer = transcribe(client, data, name=f"example.{container}", response_format="verbose_json")
        assert close_to_vad(answer.segments), (container, codec)
        if codec == "flac" or (codec == "pcm_s24le" and rate == 16000):
            assert answer.text == reference.text, codec  # lossless at 16 kHz: the very same samples


def test_streaming_sends_one_delta_per_segment_adding_up_to_the_text(client, recording):
    events = list(transcribe(client, recording, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(deltas) == 12 and len(done) == 1 and events[-1] is done[0]
    assert "".join(deltas) == done[0].text == transcribe(client, recording).text


def test_errors_come_in_openais_shape(client, live, recording):
    with pytest.raises(openai.NotFoundError) as wrong:
        client.audio.transcriptions.create(model="nope", file=("a.wav", io.BytesIO(recording)))
    assert wrong.value.code == "model_not_found" and wrong.value.param == "model"
    with pytest.raises(openai.BadRequestError) as not_audio:
        transcribe(client, b"not audio at all" * 100, name="a.mp3")
    assert "Undecodable audio" in not_audio.value.message
    with pytest.raises(openai.BadRequestError) as translation:
        client.audio.translations.create(model="whisper-1", file=("a.wav", io.BytesIO(recording)))
    assert "not supported" in translation.value.message
    stranger = openai.OpenAI(base_url=f"{live.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.audio.transcriptions.create(model="whisper-1", file=("a.wav", io.BytesIO(recording)))
    bare = requests.post(f"{live.url}/v1/audio/transcriptions", timeout=30)
    assert bare.status_code == 401 and set(bare.json()["error"]) == {"message", "type", "param", "code"}


def test_the_model_list_names_the_speech_models_and_requests_are_counted(client, live):
    assert {m.id for m in client.models.list()} == {"streaming_asr", "offline"}
    info = requests.get(f"{live.url}/model/info", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
    assert info["available_models"]["offline"]["total_requests"] > 12  # each segment a queued request


# -- Realtime transcription over WebSocket ----------------------------------------------------------------------------
def at_rate(pcm: bytes, rate: int) -> bytes:
    """16 kHz PCM at another rate (linear interpolation: the server's own resampler is what is under test)."""
    import numpy as np

    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    times = np.arange(round(len(samples) * rate / 16000)) * 16000 / rate
    return np.interp(times, np.arange(len(samples)), samples).astype("<i2").tobytes()


async def realtime(live, audio: bytes, session: dict, expect: int, key: str = KEY, piece_ms: int = 100) -> list:
    """Stream `audio` as the SDK's Realtime client does, commit at the end, and gather the server's events
    until `expect` items are completed (or failed)."""
    import asyncio
    import base64

    client = openai.AsyncOpenAI(base_url=f"{live.url}/v1", websocket_base_url=f"{live.ws_url}/v1", api_key=key)
    events = []
    async with client.realtime.connect(model="offline", extra_query={"intent": "transcription"}) as conn:
        await conn.send({"type": "session.update", "session": session})
        rate = session["audio"]["input"]["format"]["rate"]
        step = rate * 2 * piece_ms // 1000
        for i in range(0, len(audio), step):
            piece = base64.b64encode(audio[i:i + step]).decode()
            await conn.send({"type": "input_audio_buffer.append", "audio": piece})
        await conn.send({"type": "input_audio_buffer.commit"})

        async def gather():
            async for event in conn:
                events.append(event)
                if sum(e.type.endswith(("transcription.completed", "transcription.failed")) for e in events) == expect:
                    return
        await asyncio.wait_for(gather(), 240)
    return events


def transcription_session(rate: int, turn_detection: dict | None = None) -> dict:
    return {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}, "transcription": {"model": "offline"},
        "turn_detection": turn_detection or {"type": "server_vad"}}}}


def of_type(events, suffix: str) -> list:
    return [e for e in events if e.type.endswith(suffix)]


def test_realtime_gives_one_completed_item_per_vad_segment(live, client, recording, cache_dir):
    import asyncio

    from scripts.recordings import pcm_of

    pcm = pcm_of(example("vad_example.wav", cache_dir))
    events = asyncio.run(realtime(live, at_rate(pcm, 24000), transcription_session(24000), expect=12))
    assert events[0].type == "session.created" and events[1].type == "session.updated"
    started, stopped = of_type(events, "speech_started"), of_type(events, "speech_stopped")
    committed, completed = of_type(events, "buffer.committed"), of_type(events, "transcription.completed")
    assert len(completed) == len(committed) == 12 and not of_type(events, "error")
    heard = [[a.audio_start_ms, b.audio_end_ms] for a, b in zip(started, stopped)]
    assert len(heard) == 12 and all(abs(x - y) <= 40 for got, want in zip(heard, VAD_EXAMPLE_SEGMENTS)
                                    for x, y in zip(got, want))  # the 12th closed by the commit
    assert [c.item_id for c in completed] == [c.item_id for c in committed] == [s.item_id for s in started]
    assert all(c.transcript for c in completed) and all(c.usage.seconds > 0 for c in completed)
    items = {c.item_id for c in completed}
    deltas = of_type(events, "transcription.delta")
    assert deltas and all(d.item_id in items and d.delta for d in deltas)  # the streaming model's partials

    # At 16 kHz the very samples /v1/audio/transcriptions hears: the same text, segment by segment.
    same = asyncio.run(realtime(live, pcm, transcription_session(16000), expect=12))
    reference = transcribe(client, recording, response_format="verbose_json")  # whisper-1: the asr model
    assert [c.transcript for c in of_type(same, "transcription.completed")] == [s.text for s in reference.segments]


def test_realtime_commits_by_hand_without_turn_detection_and_answers_bad_events(live, recording, cache_dir):
    import asyncio
    import base64

    from scripts.recordings import pcm_of

    pcm = pcm_of(example("vad_example.wav", cache_dir))[:32000 * 3]
    session = transcription_session(16000)
    session["audio"]["input"]["turn_detection"] = None
    events = asyncio.run(realtime(live, pcm, session, expect=1))
    assert not of_type(events, "speech_started") and len(of_type(events, "buffer.committed")) == 1
    assert of_type(events, "transcription.completed")[0].transcript

    async def misbehave():
        client = openai.AsyncOpenAI(base_url=f"{live.url}/v1", websocket_base_url=f"{live.ws_url}/v1", api_key=KEY)
        async with client.realtime.connect(model="x", extra_query={"intent": "transcription"}) as conn:
            await conn.send({"type": "response.create"})
            await conn.send({"type": "input_audio_buffer.append", "audio": "not base64!"})
            await conn.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "transcription": {"model": "nope"}}}}})
            await conn.send({"type": "input_audio_buffer.commit"})
            await conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 4800).decode()})
            await conn.send({"type": "input_audio_buffer.clear"})
            return [await conn.recv() for _ in range(6)]
    answers = asyncio.run(misbehave())
    assert [a.type for a in answers] == ["session.created", "error", "error", "error", "error",
                                         "input_audio_buffer.cleared"]
    assert answers[3].error.code == "model_not_found" and answers[4].error.code == "invalid_request"
    assert all(a.error.type == "invalid_request_error" for a in answers[1:5])

    import websockets.sync.client as ws_client
    for url, status in ((f"{live.ws_url}/v1/realtime?intent=transcription", 401),
                        (f"{live.ws_url}/v1/realtime?intent=conversation&token={KEY}", 400)):
        with pytest.raises(Exception) as refused:
            ws_client.connect(url)
        assert refused.value.response.status_code == status, url
