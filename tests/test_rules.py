"""The arbiter's pure rules, called directly: the transition table, the restart policy, memory admission, stream
expiry, the kill verdicts and the housekeeping facts. No loop at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.arbiter.admission import Admission, Footprints
from supervisor.arbiter.events import (HeartbeatLost, ModelIdle, OverMemoryCap, ReplicaIdle, RequestStuck,
                                       ScaleUp)
from supervisor.arbiter.housekeeping import Housekeeping
from supervisor.arbiter.kills import kill_reason
from supervisor.catalog import catalog_entry
from supervisor.config import ServerSettings, completed
from supervisor.replica import Model, Replica
from supervisor.restarts import RestartPolicy
from supervisor.states import TRANSITIONS, IllegalTransition, ModelStatus, check_transition
from supervisor.streams import Stream, StreamRegistry
from supervisor.work import PunctuateWork
from wire.errors import SupervisorError
from wire.model_config import ModelConfig

S = ModelStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Board:
    closing = False


def model(name: str = "punctuation", **settings) -> Model:
    config = completed(name, ModelConfig(**settings))
    return Model(catalog_entry(name, config), config)


def serving(target: Model, count: int = 1, last_used: float = 0.0, unique_mb: float = 50.0) -> list[Replica]:
    target.status = S.LOADED
    target.generation = 1
    for index in range(count):
        replica = Replica(target.model_id, f"{target.model_id}:{index}".encode(), 1)
        replica.ready, replica.last_used, replica.last_heartbeat = True, last_used, last_used
        replica.unique_mb = unique_mb
        target.replicas.append(replica)
    return target.replicas


def test_the_transition_table_allows_the_lifecycle_and_refuses_the_rest():
    for old, new in [(S.UNLOADED, S.LOADING), (S.LOADING, S.LOADED), (S.LOADED, S.UNLOADING),
                     (S.UNLOADING, S.UNLOADED), (S.LOADING, S.FAILED), (S.FAILED, S.LOADING)]:
        check_transition(old, new)
    for old, new in [(S.UNLOADED, S.LOADED), (S.UNLOADING, S.LOADING), (S.UNLOADED, S.FAILED)]:
        with pytest.raises(IllegalTransition):
            check_transition(old, new)
    assert all(old not in targets for old, targets in TRANSITIONS.items())  # no move to itself


def test_restart_delays_double_to_their_cap_within_a_budget_per_window():
    clock = Clock()
    policy = RestartPolicy(budget=4, window_s=100, max_delay_s=3, clock=clock)
    assert [policy.next_delay("m") for _ in range(5)] == [1.0, 2.0, 3.0, 3.0, None]
    assert policy.seconds_until_allowed("m") == 100
    clock.now += 100.5
    assert policy.next_delay("m") == 1.0           # the window moved on: the budget is back
    assert policy.next_delay("other") == 1.0       # per model


def test_admission_counts_shared_weights_once_and_evicts_idle_models_least_recently_used(tmp_path: Path):
    settings = ServerSettings(memory_margin_mb=10)
    old, recent, loading = model("vad"), model("punctuation"), model("streaming_asr")
    models = {m.model_id: m for m in (old, recent, loading)}
    serving(old, unique_mb=300)
    serving(recent, unique_mb=300)
    old.usage.last_used_monotonic, recent.usage.last_used_monotonic = 1.0, 2.0
    footprints = Footprints(tmp_path)
    footprints.record(loading, 500, 200)
    admission = Admission(models, settings, footprints, host_available_mb=lambda: 1000)
    assert admission.need_mb(loading) == 500 + 200 + 10       # first replica maps the weights
    assert admission.admit(loading) == []
    small = Admission(models, settings, footprints, host_available_mb=lambda: 500)
    assert small.admit(loading) == [old]                       # least recently used goes first
    tiny = Admission(models, settings, footprints, host_available_mb=lambda: 50)
    with pytest.raises(SupervisorError) as refused:
        tiny.admit(loading)
    assert refused.value.code == "INSUFFICIENT_MEMORY" and refused.value.context["needed_mb"] == 710


def test_a_stream_expires_only_when_idle_and_nothing_is_pending():
    registry = StreamRegistry()
    idle, busy = Stream("m", False, 60), Stream("m", False, 60)
    busy.pending = 1
    registry.add(idle)
    registry.add(busy)
    now = idle.last_activity + 61
    assert registry.expired(now) == [idle]
    assert registry.expired(idle.last_activity + 59) == []


def test_the_kill_verdicts_say_why_and_spare_processes_already_stopping():
    target = model()
    replica = serving(target)[0]
    assert "request_timeout_s=20" in kill_reason(RequestStuck(target, replica, 20.0))
    assert kill_reason(HeartbeatLost(target, replica, 12.3)) == "no heartbeat for 12.3 s (hung)"
    assert "max_memory_mb=100" in kill_reason(OverMemoryCap(target, replica, 150.0, 100.0))
    replica.stopping = True
    assert kill_reason(HeartbeatLost(target, replica, 12.3)) is None
    assert kill_reason(OverMemoryCap(target, replica, 150.0, 100.0)) is None


def housekeeping(*models: Model, heartbeat_timeout_s: float = 10.0, budget_mb: float = 0.0) -> Housekeeping:
    table = {m.model_id: m for m in models}
    settings = ServerSettings(heartbeat_timeout_s=heartbeat_timeout_s, memory_budget_mb=budget_mb)
    admission = Admission(table, settings, Footprints(Path("/nonexistent")), host_available_mb=lambda: 10 ** 6)
    return Housekeeping(table, StreamRegistry(), admission, Board(), settings)


def test_housekeeping_sees_silence_only_while_the_loop_listened():
    target = model()
    replica = serving(target, last_used=100.0)[0]
    rules = housekeeping(target)
    assert [type(f) for f in rules.facts(now=111.0, listening_since=0.0)] == [HeartbeatLost]
    assert rules.facts(now=111.0, listening_since=105.0) == []     # the supervisor itself was stopped
    replica.last_heartbeat = 110.0
    assert rules.facts(now=111.0, listening_since=0.0) == []


def test_housekeeping_scales_up_for_a_waiting_queue_and_idles_replicas_then_the_model():
    target = model(max_replicas=2, keep_alive_s=30, scale_up_after_ms=200)
    serving(target, last_used=0.0)[0].running = [object()]
    work = PunctuateWork(target.model_id, 60, "x")
    target.queue.append(work)
    facts = housekeeping(target).facts(now=work.enqueued_at + 0.3, listening_since=work.enqueued_at)
    assert [type(f) for f in facts] == [ScaleUp] and facts[0].waited_ms == pytest.approx(300, abs=1)

    two = model(max_replicas=2, keep_alive_s=30)
    first, _ = serving(two, count=2, last_used=0.0)
    facts = housekeeping(two).facts(now=31.0, listening_since=31.0)
    assert [type(f) for f in facts] == [ReplicaIdle] and facts[0].replica is first
    one = model(keep_alive_s=30)
    serving(one, last_used=0.0)
    assert [type(f) for f in housekeeping(one).facts(now=31.0, listening_since=31.0)] == [ModelIdle]
    assert housekeeping(one).facts(now=29.0, listening_since=29.0) == []
