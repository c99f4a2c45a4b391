"""The flows on the facade's fake (tests/fake_facade.py): what each flow asks of the facade and how it shapes
the answers, in milliseconds. The same flows on real model processes are tested end to end elsewhere."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import pytest

from flows.live import LiveOptions, LiveSession, PartialText, SegmentClosed, SpeechStarted
from flows.service import Flows
from supervisor.orders import Abort, Feed, LiveSessions, OpenStream, Punctuation, Recording, Refused
from tests.fake_facade import FakeSupervisor
from wire.audio import BYTES_PER_MS
from wire.errors import SupervisorError

SECOND = b"\1\0" * 16000


@pytest.fixture
def fake() -> FakeSupervisor:
    return FakeSupervisor()


def test_punctuation_is_one_order_on_the_kinds_default_model(fake):
    result = Flows(fake).punctuate("你好")
    assert result.text == "你好。" and result.model_ms == 0.5
    assert fake.orders == [Punctuation("punctuation", "你好")]


def test_a_transcription_splits_on_the_vads_segments_and_punctuates_each(fake):
    transcript = Flows(fake).transcribe(SECOND * 2, punctuate=True, vad=True)
    assert [type(o) for o in fake.orders] == [Recording, Recording, Punctuation]
    assert fake.orders[1].pcm == (SECOND * 2)[100 * BYTES_PER_MS:]   # the segment's audio, not the whole
    assert transcript.segments[0].start_ms == 100 and transcript.segments[0].end_ms == 2000
    assert transcript.punctuated_text == transcript.text + "。"


def test_without_a_loaded_vad_the_recording_goes_whole(fake):
    transcript = Flows(fake).transcribe(SECOND, punctuate=False)   # vad None: only when the VAD is loaded
    assert [type(o) for o in fake.orders] == [Recording] and transcript.segments is None


def test_punctuation_that_fails_leaves_the_text_and_a_warning(fake):
    flows = Flows(fake)
    warnings: list[str] = []
    fake.refuse_with = SupervisorError("MODEL_CRASHED", "Model crashed", "pid 1")
    assert flows.punctuated_or_warn("你好", warnings) is None
    assert warnings and "MODEL_CRASHED" in warnings[0]


def test_bad_pcm_is_refused_before_it_queues_and_counted(fake):
    with pytest.raises(SupervisorError) as refused:
        Flows(fake).transcribe(b"\0\0\0", punctuate=False)
    assert refused.value.code == "INVALID_REQUEST" and "Odd" in refused.value.message
    assert [type(o) for o in fake.orders] == [Refused] and fake.refused == 1


def test_a_stream_opens_feeds_and_its_final_text_is_punctuated(fake):
    flows = Flows(fake)
    opened = flows.open_stream(punctuate=True)
    assert opened.model == "streaming_asr" and opened.sample_rate == 16000
    assert flows.feed(opened.stream_id, SECOND).text == "s1000"
    final = flows.feed(opened.stream_id, b"", is_final=True)
    assert final.text == "s1000" and final.punctuated_text == "s1000。"
    with pytest.raises(SupervisorError) as gone:
        flows.feed(opened.stream_id, SECOND)
    assert gone.value.code == "STREAM_NOT_FOUND"


def test_a_triton_sequence_is_a_stream_under_the_clients_id(fake):
    flows = Flows(fake)
    flows.feed_sequence("7", SECOND, start=True, end=False)
    text, cold = flows.feed_sequence("7", SECOND, start=False, end=True)
    assert text.partial_text == "s2000" and cold is False
    assert isinstance(fake.orders[0], OpenStream) and fake.orders[0].sequence_id == "7"


def test_a_stuck_answer_is_internal_not_a_hang(fake):
    flows = Flows(fake)
    flows.waiter.backstop_s = lambda audio_bytes=0: 0.05
    fake.submit = lambda *orders: [Future() for _ in orders]   # an arbiter that never answers
    with pytest.raises(SupervisorError) as stuck:
        flows.punctuate("你好")
    assert stuck.value.code == "INTERNAL"


def live(fake: FakeSupervisor, **options) -> LiveSession:
    return LiveSession(Flows(fake), LiveOptions(**options))


def test_a_live_step_feeds_the_vad_and_the_online_model_in_one_hand_off(fake):
    async def run():
        session = live(fake)
        events = await session.push(SECOND)          # 1 s: one step of 600 ms, 400 ms wait in the inbox
        feeds = [o for o in fake.orders if isinstance(o, Feed)]
        assert [f.model_id for f in feeds] == ["vad", "streaming_asr"] and len(feeds[0].pcm) == 600 * BYTES_PER_MS
        assert [type(e) for e in events] == [SpeechStarted, PartialText]
        closing = await session.cut(final=True)
        closed = [e for e in closing if isinstance(e, SegmentClosed)]
        assert len(closed) == 1 and (closed[0].start_ms, closed[0].end_ms) == (0, 1000)
        text = await session.completed(closed[0])
        assert text.punctuated_text == text.text + "。" and text.end_ms == 1000
        await session.close()
    asyncio.run(run())
    assert LiveSessions(["vad", "streaming_asr"], 1) in fake.orders and fake.live_sessions == 0


def test_closing_a_live_session_aborts_its_open_streams(fake):
    async def run():
        session = live(fake)
        await session.push(SECOND)
        assert len(fake.streams) == 2
        await session.close()
        await session.close()   # twice is fine
    asyncio.run(run())
    assert fake.streams == {} and sum(isinstance(o, Abort) for o in fake.orders) == 2
    assert fake.live_sessions == 0


def test_a_live_session_past_its_limit_is_refused(fake):
    async def run():
        session = live(fake, max_audio_s=1.0)
        with pytest.raises(SupervisorError) as refused:
            await session.push(SECOND * 2)
        assert refused.value.code == "PAYLOAD_TOO_LARGE"
        await session.close()
    asyncio.run(run())
