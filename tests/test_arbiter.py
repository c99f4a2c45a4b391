"""The arbiter on its real loop thread and real ZeroMQ, against a scripted fake spawner (tests/fake_spawner.py):
transitions, cancel, force_reload, admission of `all`, restart budget, scaling, queue overflow, deadlines, fair
sharing, with callers on other threads. The same rules in virtual time, single-threaded: test_arbiter_rules.py."""

from __future__ import annotations

from flows.service import Flows

import os
import threading

import pytest

from supervisor import page_cache
from supervisor.core import Supervisor
from wire.errors import SupervisorError
from tests.fake_spawner import FakeSpawner
from tests.helpers import demo_config, wait_for

PCM_SECOND = b"\x00\x01" * 16000


@pytest.fixture
def fake():
    return FakeSpawner()


@pytest.fixture
def arbiter(fake, tmp_path, start_supervisor):
    """Build a supervisor on the fake spawner: `arbiter(server={...}, punctuation={...})`."""
    def make(server: dict | None = None, **models: dict) -> Supervisor:
        server = {"restart_backoff_max_s": 0.05, "heartbeat_timeout_s": 1.0, **(server or {})}
        return start_supervisor(demo_config(server, **models), tmp_path, stop_grace_s=0.2, spawner=fake)
    yield make
    start_supervisor.close_all()
    assert fake.wait_all_gone(), "a fake process outlived its supervisor"


def status(sup: Supervisor, model_id: str = "punctuation") -> str:
    return sup.view(model_id).status


def in_threads(calls: list) -> list:
    """Run each call in its own thread; return each one's result or exception, in order."""
    results: list = [None] * len(calls)

    def run(index: int, call) -> None:
        try:
            results[index] = call()
        except SupervisorError as exc:
            results[index] = exc
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_load_and_unload_walk_the_lifecycle(arbiter, fake):
    sup = arbiter()
    fake.script("punctuation").load_s = 0.2
    ticket = sup.request_load("punctuation")
    assert status(sup) == "loading" and sup.view("punctuation").loading
    sup.await_load(ticket)
    view = sup.view("punctuation")
    assert view.status == "loaded" and view.pid == fake.alive("punctuation")[0].pid
    assert view.memory_usage_mb == 100.0 and [r.state for r in view.replicas] == ["idle"]
    assert sup.job(ticket.load_id).status == "completed"
    unloaded = sup.unload("punctuation")
    assert unloaded.memory_freed_mb == 50.0 and unloaded.was_loaded
    assert status(sup) == "unloaded" and not fake.alive("punctuation")
    assert sup.unload("punctuation").memory_freed_mb == 0.0


def test_an_unload_during_a_load_cancels_it(arbiter, fake):
    sup = arbiter()
    fake.script("punctuation").load_s = 5
    ticket = sup.request_load("punctuation")
    wait_for(lambda: fake.alive("punctuation"), timeout=2)
    sup.unload("punctuation")
    with pytest.raises(SupervisorError) as cancelled:
        sup.await_load(ticket)
    assert cancelled.value.code == "CONFLICT"
    assert sup.job(ticket.load_id).status == "cancelled" and status(sup) == "unloaded"
    assert not fake.alive("punctuation")


def test_a_load_failure_keeps_its_reason_when_the_exit_is_seen_first(arbiter, fake):
    sup = arbiter()
    fake.script("punctuation").fail_load = "weights are corrupt"
    fake.script("punctuation").exit_before_reason = True
    with pytest.raises(SupervisorError) as failed:
        sup.await_load(sup.request_load("punctuation"))
    assert "weights are corrupt" in failed.value.message and failed.value.details == "fix the source"


def test_a_failed_force_reload_keeps_the_old_replica_serving(arbiter, fake):
    sup = arbiter()
    sup.await_load(sup.request_load("punctuation"))
    old_pid = sup.view("punctuation").pid
    fake.script("punctuation").fail_load = "weights are corrupt"
    with pytest.raises(SupervisorError) as failed:
        sup.await_load(sup.request_load("punctuation", force_reload=True))
    assert failed.value.code == "LOAD_FAILED" and "corrupt" in failed.value.message
    assert status(sup) == "loaded" and sup.view("punctuation").pid == old_pid
    assert Flows(sup).punctuate("你好").text == "你好。"


def test_force_reload_switches_dispatch_and_drains_the_old_replica_without_losing_requests(arbiter, fake):
    sup = arbiter()
    fake.script("streaming_asr").reply_s = 0.05
    opened = Flows(sup).open_stream(punctuate=False)
    old_pid = sup.view("streaming_asr").pid
    ticket = sup.request_load("streaming_asr", force_reload=True)
    wait_for(lambda: sup.view("streaming_asr").pid != old_pid, timeout=5)
    assert Flows(sup).feed(opened.stream_id, PCM_SECOND).text  # the stream goes on, on the old process
    assert Flows(sup).transcribe(PCM_SECOND, punctuate=False).text  # new work goes to the new one
    assert [c.pid for c in fake.alive("streaming_asr")] == [old_pid, sup.view("streaming_asr").pid]
    assert Flows(sup).feed(opened.stream_id, b"", is_final=True).partial_text
    sup.await_load(ticket)  # ends once the old process is gone
    assert [c.pid for c in fake.alive("streaming_asr")] == [sup.view("streaming_asr").pid]
    assert sup.view("streaming_asr").metrics.requests_by_outcome.get("crashed") is None


def test_load_all_partly_admitted_still_has_a_load_id(arbiter, fake):
    sup = arbiter(server={"memory_budget_mb": 600, "memory_margin_mb": 0, "evict_idle": False})
    footprints, models = sup.arbiter.admission.footprints, sup.arbiter.models
    footprints.record(models["streaming_asr"], 1000, 0)  # as measured by an earlier load: over the budget
    footprints.record(models["punctuation"], 100, 0)
    ticket = sup.request_load("all")
    assert ticket.load_id and set(ticket.load_ids) == {"streaming_asr", "punctuation", "vad"}
    with pytest.raises(SupervisorError) as refused:
        sup.await_load(ticket)
    assert refused.value.code == "INSUFFICIENT_MEMORY"
    job = sup.job(ticket.load_id)
    assert job.status == "failed" and job.error_code == "INSUFFICIENT_MEMORY"
    assert status(sup, "punctuation") == status(sup, "vad") == "loaded" and status(sup, "streaming_asr") == "unloaded"


def test_restarts_back_off_within_the_budget_and_requests_cannot_bypass_it(arbiter, fake):
    sup = arbiter(server={"restart_budget": 2}, punctuation={"required": True})
    sup.await_load(sup.request_load("punctuation"))
    for restarts in (1, 2):
        fake.alive("punctuation")[0].die(-9)
        wait_for(lambda: sup.view("punctuation").restarts == restarts and status(sup) == "loaded", timeout=5)
    fake.alive("punctuation")[0].die(-9)
    wait_for(lambda: status(sup) == "failed", timeout=5)
    assert "killed by SIGKILL" in sup.view("punctuation").last_error
    with pytest.raises(SupervisorError) as refused:
        Flows(sup).punctuate("你好")
    assert refused.value.code == "MODEL_NOT_READY" and "budget" in refused.value.details
    assert not fake.alive("punctuation") and sup.view("punctuation").restarts == 2


def test_a_waiting_queue_scales_up_and_idle_replicas_scale_down(arbiter, fake):
    sup = arbiter(punctuation={"max_replicas": 2, "min_replicas": 1, "scale_up_after_ms": 10,
                               "keep_alive_s": 0.5})
    fake.script("punctuation").reply_s = 0.3
    sup.await_load(sup.request_load("punctuation"))
    results = in_threads([lambda: Flows(sup).punctuate("一")] * 6)
    assert all(r.text == "一。" for r in results)
    assert len([c for c in fake.children if c.spec.model_id == "punctuation"]) == 2  # scaled up once
    wait_for(lambda: len(fake.alive("punctuation")) == 1, timeout=5)  # back down to min_replicas
    assert status(sup) == "loaded"


def test_a_full_queue_answers_overloaded(arbiter, fake):
    sup = arbiter(punctuation={"max_queue": 2})
    fake.script("punctuation").reply_s = 0.3
    sup.await_load(sup.request_load("punctuation"))
    results = in_threads([lambda: Flows(sup).punctuate("一")] * 5)
    refused = [r for r in results if isinstance(r, SupervisorError)]
    assert refused and all(r.code == "OVERLOADED" and r.context["retry_after_s"] >= 1 for r in refused)
    assert sum(1 for r in results if not isinstance(r, SupervisorError)) >= 3  # 1 running + 2 queued


def test_waiting_in_the_queue_never_counts_as_the_process_being_stuck(arbiter, fake):
    sup = arbiter(server={"request_timeout_s": 0.5, "transcribe_piece_ms": 600})
    fake.script("streaming_asr").reply_s = 0.2
    sup.await_load(sup.request_load("streaming_asr"))
    pid = sup.view("streaming_asr").pid
    results = in_threads([lambda: Flows(sup).transcribe(PCM_SECOND * 3, punctuate=False)] * 2)
    assert all(r.text.count("[") == 5 for r in results)  # 3 s in 600 ms pieces, each well past 0.5 s total
    assert sup.view("streaming_asr").pid == pid and status(sup, "streaming_asr") == "loaded"


def test_a_silent_process_past_its_deadline_is_killed_and_the_request_times_out(arbiter, fake):
    sup = arbiter(server={"request_timeout_s": 0.3, "heartbeat_timeout_s": 60})
    sup.await_load(sup.request_load("punctuation"))
    stuck = fake.alive("punctuation")[0]
    stuck.script.hang = True
    with pytest.raises(SupervisorError) as timed_out:
        Flows(sup).punctuate("你好")
    assert timed_out.value.code == "INFERENCE_TIMEOUT"
    wait_for(lambda: not stuck.alive and "stuck on a request" in (sup.view("punctuation").last_error or ""),
             timeout=5)


def test_a_long_transcription_shares_the_replica_with_other_requests(arbiter, fake):
    sup = arbiter(server={"transcribe_piece_ms": 600})
    fake.script("streaming_asr").reply_s = 0.05
    opened = Flows(sup).open_stream(punctuate=False)
    finished: list[str] = []
    long = threading.Thread(target=lambda: (Flows(sup).transcribe(PCM_SECOND * 12, punctuate=False),
                                            finished.append("transcribe")))
    long.start()
    wait_for(lambda: sup.view("streaming_asr").metrics.in_flight, timeout=2)
    Flows(sup).feed(opened.stream_id, PCM_SECOND)  # between two pieces, not after 20 of them
    finished.append("stream")
    long.join(10)
    assert finished == ["stream", "transcribe"]


def test_a_cold_start_keeps_its_own_process_with_keep_alive_zero(arbiter, fake):
    sup = arbiter(punctuation={"keep_alive_s": 0})
    for _ in range(10):
        assert Flows(sup).punctuate("你好").cold_start is True
        wait_for(lambda: status(sup) == "unloaded", timeout=5)
    assert sup.view("punctuation").metrics.requests_by_outcome == {"ok": 10}


def test_unload_answers_queued_requests_and_lets_the_running_one_finish(arbiter, fake):
    sup = arbiter()
    fake.script("punctuation").reply_s = 0.3
    sup.await_load(sup.request_load("punctuation"))
    results: dict = {}

    def ask(text: str) -> None:
        try:
            results[text] = Flows(sup).punctuate(text)
        except SupervisorError as exc:
            results[text] = exc
    running = threading.Thread(target=ask, args=("一",))
    running.start()
    wait_for(lambda: sup.view("punctuation").metrics.in_flight == 1, timeout=2)
    queued = threading.Thread(target=ask, args=("二",))
    queued.start()
    wait_for(lambda: sup.view("punctuation").metrics.queued == 1, timeout=2)
    unloaded = sup.unload("punctuation")
    running.join(5)
    queued.join(5)
    assert results["一"].text == "一。"  # running when the unload came: drained, not cut off
    assert isinstance(results["二"], SupervisorError) and results["二"].code == "MODEL_NOT_READY"
    assert unloaded.was_loaded and status(sup) == "unloaded"


def test_streams_are_bounded_per_replica_and_a_new_replica_takes_more(arbiter, fake):
    sup = arbiter(server={"max_streams_per_replica": 2}, streaming_asr={"scale_up_after_ms": 10})
    opened = [Flows(sup).open_stream(punctuate=False) for _ in range(2)]
    with pytest.raises(SupervisorError) as refused:
        Flows(sup).open_stream(punctuate=False)
    assert refused.value.code == "OVERLOADED" and "max_streams_per_replica=2" in refused.value.details
    Flows(sup).abort(opened[0].stream_id)
    assert Flows(sup).open_stream(punctuate=False).stream_id  # room again
    scaled = arbiter(server={"max_streams_per_replica": 2}, streaming_asr={"scale_up_after_ms": 10,
                                                                          "max_replicas": 2})
    for _ in range(4):  # the third waits for a second replica instead of being refused
        Flows(scaled).open_stream(punctuate=False)
    assert [r.open_streams for r in scaled.view("streaming_asr").replicas] == [2, 2]


def test_a_stream_is_capped_at_max_stream_s_and_can_still_finish(arbiter, fake):
    sup = arbiter(server={"max_stream_s": 1.5})
    stream_id = Flows(sup).open_stream(punctuate=False).stream_id
    Flows(sup).feed(stream_id, PCM_SECOND)
    with pytest.raises(SupervisorError) as refused:
        Flows(sup).feed(stream_id, PCM_SECOND)
    assert refused.value.code == "PAYLOAD_TOO_LARGE" and "max_stream_s=1.5" in refused.value.details
    assert Flows(sup).feed(stream_id, b"", is_final=True).partial_text == "[32000][0]"


def test_a_refused_feed_does_not_keep_its_stream_from_expiring(arbiter, fake):
    sup = arbiter(server={"stream_expiry_s": 0.5}, streaming_asr={"max_queue": 1})
    fake.script("streaming_asr").reply_s = 0.3
    streams = [Flows(sup).open_stream(punctuate=False).stream_id for _ in range(3)]
    results = in_threads([lambda s=s: Flows(sup).feed(s, PCM_SECOND) for s in streams])
    assert any(isinstance(r, SupervisorError) and r.code == "OVERLOADED" for r in results)
    wait_for(lambda: sup.view("streaming_asr").details.open_streams == 0, timeout=5)  # every one expires


def test_a_sequence_is_found_by_its_client_id_restarts_and_is_lost_once(arbiter, fake):
    """Triton's sequence parameters on streams (the scripted fake appends `[bytes fed]` to a stream's text)."""
    sup = arbiter()
    first, _ = Flows(sup).feed_sequence("7", PCM_SECOND, start=True, end=False)
    assert first.partial_text == "[32000]"
    assert Flows(sup).feed_sequence("7", PCM_SECOND, start=False, end=False)[0].partial_text == "[32000][32000]"
    restarted, _ = Flows(sup).feed_sequence("7", PCM_SECOND, start=True, end=False)   # a new start: a fresh stream
    assert restarted.partial_text == "[32000]" and sup.view("streaming_asr").details.open_streams == 1
    with pytest.raises(SupervisorError) as other_model:   # the id is the client's per model
        Flows(sup).feed_sequence("7", PCM_SECOND, start=False, end=False, model_id="vad")
    assert other_model.value.message == "Sequence not started"
    Flows(sup).feed_sequence("7", b"", start=False, end=True)
    with pytest.raises(SupervisorError) as ended:
        Flows(sup).feed_sequence("7", PCM_SECOND, start=False, end=False)
    assert ended.value.code == "STREAM_NOT_FOUND" and "sequence_start=true" in ended.value.details

    Flows(sup).feed_sequence("8", PCM_SECOND, start=True, end=False)
    fake.alive("streaming_asr")[0].die(-9)   # its process goes away: the sequence is lost, said once
    wait_for(lambda: sup.view("streaming_asr").status != "loaded" or sup.view("streaming_asr").restarts, 5)
    with pytest.raises(SupervisorError) as lost:
        Flows(sup).feed_sequence("8", PCM_SECOND, start=False, end=False)
    assert lost.value.code == "STREAM_LOST"
    with pytest.raises(SupervisorError) as after:
        Flows(sup).feed_sequence("8", PCM_SECOND, start=False, end=False)
    assert after.value.code == "STREAM_NOT_FOUND"
    Flows(sup).feed_sequence("9", PCM_SECOND, start=True, end=False)
    fake.alive("streaming_asr")[0].die(-9)
    wait_for(lambda: not any(r.open_streams for r in sup.view("streaming_asr").replicas), 5)
    assert Flows(sup).feed_sequence("9", PCM_SECOND, start=True, end=True)[0].partial_text  # fresh after a loss


def weights_file(tmp_path, mb: int) -> str:
    """A real file standing for mapped weights, just written: its pages are in the page cache and still dirty,
    as a freshly generated or converted model's are (the unload must write them back to drop them)."""
    path = tmp_path / f"weights-{mb}.pt"
    path.write_bytes(os.urandom(mb * 1024 * 1024))
    return str(path)


def test_shared_weights_count_once_per_model_and_leave_the_page_cache_on_unload(arbiter, fake, tmp_path):
    """Admission: a second replica needs only its private memory; the unload drops the weights and says so."""
    weights = weights_file(tmp_path, 8)
    fake.script("punctuation").weights_file = weights
    # 110 MB: room for 50 + 8 (first replica and the weights) + 50 (the second); not for the weights twice
    sup = arbiter(server={"memory_budget_mb": 110, "memory_margin_mb": 0, "evict_idle": False},
                  punctuation={"max_replicas": 2, "min_replicas": 2})
    sup.arbiter.admission.footprints.record(sup.arbiter.models["punctuation"], 50, 8)
    sup.await_load(sup.request_load("punctuation"))
    wait_for(lambda: len([r for r in sup.view("punctuation").replicas if r.state == "idle"]) == 2, timeout=5)
    view = sup.view("punctuation")
    assert view.memory_shared_weights_mb == pytest.approx(8, abs=0.1)  # once per model, not per replica
    assert {r.memory_shared_weights_mb for r in view.replicas} == {view.memory_shared_weights_mb}
    assert view.details.loader == "mapped" and view.details.weights_file == weights
    unloaded = sup.unload("punctuation")
    assert unloaded.memory_freed_mb == pytest.approx(2 * 50 + 8, abs=0.1)  # both private parts + the weights
    assert page_cache.resident_mb(weights) == 0
    assert sup.view("punctuation").warm_mb is None


def test_keep_warm_leaves_the_weights_cached_and_reports_them(arbiter, fake, tmp_path):
    weights = weights_file(tmp_path, 4)
    fake.script("punctuation").weights_file = weights
    sup = arbiter(punctuation={"keep_warm": True})
    sup.await_load(sup.request_load("punctuation"))
    assert sup.unload("punctuation").memory_freed_mb == pytest.approx(50)  # the weights stay, by request
    view = sup.view("punctuation")
    assert view.status == "unloaded" and view.warm_mb == pytest.approx(4, abs=0.1)
    assert page_cache.resident_mb(weights) == pytest.approx(4, abs=0.1)
    assert view.memory_shared_weights_mb is None  # no process maps them now
