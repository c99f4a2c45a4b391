"""The arbiter's time rules in virtual time (tests/step_loop.py): load deadlines, restart backoff and budget,
heartbeats, idle unloads, request deadlines, and a handler that raises. No thread, socket or process: a
minute of the arbiter's life takes milliseconds."""

from __future__ import annotations

import signal
from concurrent.futures import Future

import pytest

from supervisor.arbiter.arbiter import Arbiter
from tests.helpers import demo_config
from tests.step_loop import StepLoop, StepSpawner
from wire.errors import SupervisorError
from wire.protocol import HEARTBEAT_SUFFIX, Heartbeat, Punctuate, Reply, Shutdown


class Harness:
    def __init__(self, tmp_path, server: dict | None = None, **models: dict) -> None:
        self.spawner = StepSpawner()
        self.arbiter = Arbiter(demo_config(server, **models), tmp_path, self.spawner, stop_grace_s=2.0,
                               log_format="text", version="test", started_at=0.0, make_loop=StepLoop)
        self.loop: StepLoop = self.arbiter.loop
        self.spawner.loop = self.loop
        self.ops = self.arbiter.operations
        self.arbiter.start()
        self.loop.turn()

    def run(self, fn) -> Future:
        future = self.loop.call(fn)
        self.loop.turn()
        return future

    def load(self, model_id: str, timeout_s: float = 60.0):
        job = self.run(lambda: self.ops.load(model_id, False, timeout_s)).result()
        self.loop.turn()
        return job

    def loaded(self, model_id: str):
        """Load `model_id` and let its process say Ready."""
        self.load(model_id)
        self.spawner.alive(model_id)[-1].ready()
        self.loop.turn()
        assert self.status(model_id) == "loaded"
        return self.spawner.alive(model_id)[-1]

    def live_for(self, seconds: float, *children) -> None:
        """Let virtual time pass while `children` beat every second, as healthy workers do."""
        for _ in range(int(seconds)):
            for child in children:
                self.loop.deliver(child.spec.identity + HEARTBEAT_SUFFIX, Heartbeat(pid=child.pid))
            self.loop.advance(1.0)
        self.loop.advance(seconds - int(seconds))

    def status(self, model_id: str) -> str:
        return self.arbiter.snapshot.models[model_id].status

    def view(self, model_id: str):
        return self.arbiter.snapshot.models[model_id]


@pytest.fixture
def rig(tmp_path):
    return lambda server=None, **models: Harness(tmp_path, server, **models)


def test_a_load_past_its_timeout_kills_its_process_and_fails_with_load_timeout(rig):
    h = rig()
    job = h.load("punctuation", timeout_s=30)
    h.loop.advance(29.9)
    assert h.status("punctuation") == "loading" and h.spawner.alive("punctuation")
    h.loop.advance(0.2)
    assert signal.SIGKILL in h.spawner.of("punctuation")[0].signals and not h.spawner.alive("punctuation")
    assert job.error_code == "LOAD_TIMEOUT" and h.status("punctuation") == "failed"
    assert "30 s timeout" in h.view("punctuation").last_error


def test_a_required_model_restarts_with_doubling_backoff_until_its_budget_is_spent(rig):
    h = rig({"restart_budget": 2, "restart_window_s": 600, "restart_backoff_max_s": 60},
            punctuation={"required": True})
    h.loaded("punctuation").exit(1)
    for started, backoff_s in ((1, 1.0), (2, 2.0)):    # 1 s, then 2 s
        h.loop.turn()
        assert h.status("punctuation") == "failed"
        h.loop.advance(backoff_s - 0.1)
        assert len(h.spawner.of("punctuation")) == started
        h.loop.advance(0.2)
        assert len(h.spawner.of("punctuation")) == started + 1
        h.spawner.alive("punctuation")[0].ready()
        h.loop.turn()
        assert h.status("punctuation") == "loaded"
        h.spawner.alive("punctuation")[0].exit(1)
    h.loop.advance(3600)
    assert len(h.spawner.of("punctuation")) == 3        # budget of 2 spent: it stays failed
    assert h.status("punctuation") == "failed" and h.view("punctuation").restarts == 2


def test_a_request_cannot_restart_a_model_whose_budget_is_spent(rig):
    h = rig({"restart_budget": 1, "restart_window_s": 600}, punctuation={"required": True})
    h.loaded("punctuation").exit(1)
    h.loop.advance(1.1)
    h.spawner.alive("punctuation")[0].exit(1)       # the restart dies while loading
    h.loop.turn()
    answer = h.run(lambda: h.ops.punctuate("punctuation", "hello")).result(0)
    with pytest.raises(SupervisorError) as refused:
        answer.result(0)
    assert refused.value.code in ("MODEL_NOT_READY", "LOAD_FAILED")
    assert len(h.spawner.of("punctuation")) == 2


def test_a_process_that_stops_beating_is_killed_after_heartbeat_timeout_and_a_beating_one_lives(rig):
    h = rig({"heartbeat_timeout_s": 10})
    quiet, beating = h.loaded("punctuation"), h.loaded("vad")
    h.live_for(9.5, beating)
    assert quiet.alive and beating.alive
    h.live_for(1.0, beating)
    assert not quiet.alive and quiet.signals == [signal.SIGKILL]
    assert beating.alive and h.status("vad") == "loaded"
    assert "no heartbeat for 10." in h.view("punctuation").last_error


def test_an_idle_model_unloads_after_keep_alive_and_not_before(rig):
    h = rig(punctuation={"keep_alive_s": 300})
    child = h.loaded("punctuation")
    h.live_for(299, child)
    assert h.status("punctuation") == "loaded"
    h.live_for(1.5, child)
    assert (child.spec.identity, Shutdown()) in h.loop.sent
    child.exit(0)
    h.loop.turn()
    assert h.status("punctuation") == "unloaded" and h.view("punctuation").metrics.idle_unloads == 1


def test_a_request_past_request_timeout_kills_the_stuck_process_and_answers_inference_timeout(rig):
    h = rig({"request_timeout_s": 20})
    child = h.loaded("punctuation")
    answer = h.run(lambda: h.ops.punctuate("punctuation", "hello")).result(0)
    assert any(isinstance(m, Punctuate) for _, m in h.loop.sent)
    h.live_for(19.9, child)
    assert not answer.done()
    h.live_for(0.2, child)
    with pytest.raises(SupervisorError) as timed_out:
        answer.result(0)
    assert timed_out.value.code == "INFERENCE_TIMEOUT" and child.signals == [signal.SIGKILL]
    h.loop.turn()
    assert "stuck on a request" in h.view("punctuation").last_error


def test_a_reply_in_time_is_the_answer(rig):
    h = rig()
    child = h.loaded("punctuation")
    answer = h.run(lambda: h.ops.punctuate("punctuation", "hello")).result(0)
    request = next(m for _, m in h.loop.sent if isinstance(m, Punctuate))
    h.loop.deliver(child.spec.identity, Reply(request_id=request.request_id, text="Hello."))
    h.loop.turn()
    assert answer.result(0).text == "Hello."


def test_code_that_raises_while_working_on_a_model_fails_that_model_loudly_and_no_other(rig):
    h = rig()
    h.loaded("vad")
    h.spawner.memory = (100.0,)        # a malformed memory figure: reading it raises in the Ready handler
    job = h.load("punctuation")
    h.spawner.alive("punctuation")[0].ready()
    h.loop.turn()
    view = h.view("punctuation")
    assert view.status == "failed" and view.last_error.startswith("internal error: ValueError")
    assert job.error_code == "INTERNAL"
    assert h.spawner.alive("punctuation") == []       # its process was killed, not left half-loaded
    assert h.status("vad") == "loaded"                # the other model serves on
    h.spawner.memory = (100.0, 50.0)
    h.load("punctuation")
    h.spawner.alive("punctuation")[0].ready()
    h.loop.turn()
    assert h.status("punctuation") == "loaded"        # and the failed one loads again


def test_a_crashed_optional_model_stays_failed(rig):
    h = rig()
    h.loaded("punctuation").exit(-9)
    h.loop.advance(3600)
    assert h.status("punctuation") == "failed" and h.view("punctuation").restarts == 0
    assert len(h.spawner.of("punctuation")) == 1


def test_an_open_stream_holds_an_idle_model_and_its_end_lets_it_go(rig):
    h = rig(streaming_asr={"keep_alive_s": 1})
    child = h.loaded("streaming_asr")
    stream = h.run(lambda: h.ops.open_stream("streaming_asr", False)).result(0).result(0).stream
    h.live_for(30, child)
    assert h.status("streaming_asr") == "loaded"          # idle, but the stream's cache lives there
    h.run(lambda: h.ops.abort("streaming_asr", stream.stream_id))
    h.live_for(1.5, child)
    assert (child.spec.identity, Shutdown()) in h.loop.sent and h.view("streaming_asr").metrics.idle_unloads == 1


def test_idle_time_counts_from_the_load_not_from_start_up(rig):
    h = rig(punctuation={"keep_alive_s": 2})
    h.loop.advance(10)                                    # the server existed long before the load
    child = h.loaded("punctuation")
    h.live_for(1.5, child)
    assert h.status("punctuation") == "loaded"
    h.live_for(1.0, child)
    assert (child.spec.identity, Shutdown()) in h.loop.sent
