"""The fleet's order routing without Ray: node agents stood in for by the facade's fake (a test double: this is
about the gateway's own bookkeeping of streams), so that a long-running gateway keeps no entry for a stream that
ended, and a sequence's restart replaces its old stream."""

from __future__ import annotations

from concurrent.futures import Future

from supervisor.fleet.routing import OrderRouter
from supervisor.orders import Abort, Feed, OpenStream
from tests.fake_facade import FakeSupervisor

SECOND = b"\1\0" * 16000


class Agent:
    """`agent.order.remote(order).future()`, answered at once by the fake facade."""

    def __init__(self, fake: FakeSupervisor) -> None:
        self.fake, self.order = fake, self

    def remote(self, order) -> Agent:
        self.answer = self.fake.submit(order)[0]
        return self

    def future(self) -> Future:
        return self.answer


class OneNodeFleet:
    def __init__(self) -> None:
        self.fake = FakeSupervisor()
        self.agents = {"node-a": Agent(self.fake)}

    def serving(self, model_id: str) -> list[str]:
        return ["node-a"]

    def place_for(self, model_id: str, avoid: str | None = None) -> str:
        return "node-a"

    def load_target(self, model_id: str) -> str | None:
        return None


def test_a_stream_that_ends_leaves_no_entry_behind():
    router = OrderRouter(OneNodeFleet())
    opened = router.submit(OpenStream("streaming_asr"))[0].result().stream.stream_id
    aborted = router.submit(OpenStream("streaming_asr"))[0].result().stream.stream_id
    assert set(router.streams) == {opened, aborted}
    router.submit(Feed("streaming_asr", opened, SECOND))[0].result()
    assert opened in router.streams
    router.submit(Feed("streaming_asr", opened, b"", is_final=True))[0].result()
    router.submit(Abort("streaming_asr", aborted))[0].result()
    assert router.streams == {} and router.sequence_of == {}


def test_a_sequence_restart_replaces_its_old_stream():
    router = OrderRouter(OneNodeFleet())
    first = router.submit(OpenStream("streaming_asr", sequence_id="7"))[0].result().stream.stream_id
    second = router.submit(OpenStream("streaming_asr", sequence_id="7"))[0].result().stream.stream_id
    assert set(router.streams) == {second} and router.sequences == {("streaming_asr", "7"): "node-a"}
    assert first != second and router.sequence_of == {second: ("streaming_asr", "7")}
