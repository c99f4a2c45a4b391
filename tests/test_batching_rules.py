"""How the dispatcher forms batches, in virtual time on the real arbiter (tests/step_loop.py): what waits while a
replica is busy goes to it as one `Batch`, a stream never has two pieces in one, `max_batch` bounds it, and
`max_batch_delay_ms` holds a short batch only that long. The engines' side (batched text equals text alone) is
tests/test_batching.py, on real funasr."""

from __future__ import annotations

from supervisor.config import default_batch
from supervisor.kinds import KINDS
from wire.errors import SupervisorError
from wire.protocol import Batch, Punctuate, Replies, Reply, RequestFailed, StreamFeed
from tests.test_arbiter_rules import Harness, rig  # noqa: F401 (the fixture)

import pytest


def sent_since(h: Harness, count: int) -> list:
    return [message for _, message in h.loop.sent[count:]]


def answer(h: Harness, child, message) -> None:
    """Answer a request or a batch as a model process would: each text with a full stop."""
    if isinstance(message, Batch):
        reply = Replies(items=tuple(Reply(request_id=m.request_id, text=m.text + "。", cpu_ms=2.0)
                                    for m in message.items))
    else:
        reply = Reply(request_id=message.request_id, text=message.text + "。", cpu_ms=2.0)
    h.loop.deliver(child.spec.identity, reply)
    h.loop.turn()


def test_work_that_queues_behind_a_busy_replica_goes_to_it_as_one_batch(rig):
    h = rig()
    child = h.loaded("punctuation")
    first = h.run(lambda: h.ops.punctuate("punctuation", "a")).result(0)
    before = len(h.loop.sent)
    rest = [h.run(lambda t=t: h.ops.punctuate("punctuation", t)).result(0) for t in "bcd"]
    assert sent_since(h, before) == []                      # the replica is busy: they wait
    lone = next(m for _, m in h.loop.sent if isinstance(m, Punctuate))
    before = len(h.loop.sent)
    answer(h, child, lone)
    assert first.result(0).text == "a。"
    batch = sent_since(h, before)
    assert len(batch) == 1 and isinstance(batch[0], Batch) and [m.text for m in batch[0].items] == ["b", "c", "d"]
    answer(h, child, batch[0])
    assert [f.result(0).text for f in rest] == ["b。", "c。", "d。"]
    # the kinds' defaults: batches only where they were measured to pay on the CPU
    assert h.view("punctuation").details.config.max_batch == 8
    assert {h.view(m).details.config.max_batch for m in ("streaming_asr", "vad")} == {1}
    assert default_batch(KINDS["streaming_asr"], "onnx") == 8      # ONNX stacks a batch's streams
    assert default_batch(KINDS["punctuation"], "onnx") == default_batch(KINDS["vad"], "onnx") == 1
    metrics = h.view("punctuation").metrics
    assert metrics.batches == 2 and metrics.mean_batch == 2.0 and metrics.cpu_s == 0.008


def test_max_batch_bounds_a_batch_and_one_sends_each_request_alone(rig):
    h = rig(punctuation={"max_batch": 2})
    child = h.loaded("punctuation")
    h.run(lambda: h.ops.punctuate("punctuation", "a"))
    for text in "bcd":
        h.run(lambda t=text: h.ops.punctuate("punctuation", t))
    answer(h, child, h.loop.sent[-1][1])
    assert [m.text for m in h.loop.sent[-1][1].items] == ["b", "c"]
    answer(h, child, h.loop.sent[-1][1])
    assert isinstance(h.loop.sent[-1][1], Punctuate) and h.loop.sent[-1][1].text == "d"

    single = rig(punctuation={"max_batch": 1})
    child = single.loaded("punctuation")
    for text in "abc":
        single.run(lambda t=text: single.ops.punctuate("punctuation", t))
    for _ in range(3):
        message = single.loop.sent[-1][1]
        assert isinstance(message, Punctuate)
        answer(single, child, message)


def test_a_failed_item_fails_alone_and_the_rest_of_its_batch_is_answered(rig):
    h = rig()
    child = h.loaded("punctuation")
    h.run(lambda: h.ops.punctuate("punctuation", "a"))
    futures = [h.run(lambda t=t: h.ops.punctuate("punctuation", t)).result(0) for t in "bc"]
    answer(h, child, h.loop.sent[-1][1])
    batch = h.loop.sent[-1][1]
    h.loop.deliver(child.spec.identity, Replies(items=(
        RequestFailed(request_id=batch.items[0].request_id, message="ValueError: bad text"),
        Reply(request_id=batch.items[1].request_id, text="c。"))))
    h.loop.turn()
    with pytest.raises(SupervisorError) as failed:
        futures[0].result(0)
    assert failed.value.code == "INTERNAL" and "bad text" in failed.value.details
    assert futures[1].result(0).text == "c。"
    assert h.view("punctuation").replicas[0].state == "idle"


def test_a_batch_holds_one_piece_per_stream_so_each_streams_audio_keeps_its_order(rig):
    h = rig(streaming_asr={"max_batch": 8})
    child = h.loaded("streaming_asr")
    streams = [h.run(lambda: h.ops.open_stream("streaming_asr", False)).result(0).result(0).stream.stream_id
               for _ in range(2)]
    one, two = streams
    pcm = b"\x00\x01" * 9600
    h.run(lambda: h.ops.feed("streaming_asr", one, pcm, False))           # runs at once
    for stream_id in (one, two, one):                                       # queue behind it
        h.run(lambda s=stream_id: h.ops.feed("streaming_asr", s, pcm, False))
    running = h.loop.sent[-1][1]
    assert isinstance(running, StreamFeed)
    h.loop.deliver(child.spec.identity, Reply(request_id=running.request_id, text="x"))
    h.loop.turn()
    batch = h.loop.sent[-1][1]
    assert isinstance(batch, Batch) and [m.stream_id for m in batch.items] == [one, two]
    h.loop.deliver(child.spec.identity, Replies(items=tuple(Reply(request_id=m.request_id, text="y")
                                                            for m in batch.items)))
    h.loop.turn()
    last = h.loop.sent[-1][1]
    assert isinstance(last, StreamFeed) and last.stream_id == one           # the second piece of `one`, after
    assert h.view("streaming_asr").metrics.audio_s == pytest.approx(1.8)   # three 600 ms pieces answered


def test_max_batch_delay_holds_a_short_batch_only_that_long(rig):
    h = rig(punctuation={"max_batch": 3, "max_batch_delay_ms": 50})
    h.loaded("punctuation")
    before = len(h.loop.sent)
    h.run(lambda: h.ops.punctuate("punctuation", "a"))
    assert sent_since(h, before) == []                     # an idle replica waits for more, up to 50 ms
    h.loop.advance(0.06)
    assert [m.text for m in sent_since(h, before) if isinstance(m, Punctuate)] == ["a"]

    full = rig(punctuation={"max_batch": 2, "max_batch_delay_ms": 1000})
    full.loaded("punctuation")
    before = len(full.loop.sent)
    full.run(lambda: full.ops.punctuate("punctuation", "a"))
    full.run(lambda: full.ops.punctuate("punctuation", "b"))
    batch = sent_since(full, before)
    assert len(batch) == 1 and [m.text for m in batch[0].items] == ["a", "b"]   # full: no wait


def test_replicas_share_the_queue_instead_of_the_first_one_free_taking_it_all(rig):
    h = rig(punctuation={"min_replicas": 2, "max_replicas": 2})
    first = h.loaded("punctuation")
    h.live_for(1.0, first)                                   # a tick: min_replicas starts the second one
    h.spawner.alive("punctuation")[-1].ready()
    h.loop.turn()
    a, b = h.spawner.alive("punctuation")
    for text in "abcdef":                                    # two run at once, four wait
        h.run(lambda t=text: h.ops.punctuate("punctuation", t))
    running = {identity: m for identity, m in h.loop.sent if isinstance(m, Punctuate)}
    assert set(running) == {a.spec.identity, b.spec.identity}
    before = len(h.loop.sent)
    answer(h, a, running[a.spec.identity])
    taken = sent_since(h, before)
    assert len(taken) == 1 and [m.text for m in taken[0].items] == ["c", "d"]   # half: b takes the rest
    answer(h, b, running[b.spec.identity])
    assert [m.text for m in sent_since(h, before + 1)] == ["e"]    # its share of the two left; f waits for
    answer(h, a, taken[0])                                          # whichever is free first
    assert [m.text for m in sent_since(h, before + 2)] == ["f"]
