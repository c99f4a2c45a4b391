"""Where each order goes: a stream's to the node holding it, others to a node that serves the model (the fewest
in flight first), or to the node its load in flight goes to, or where placement puts it. An order whose node dies
while answering, and that holds no state there, is asked once more of another node."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any, Protocol

from supervisor.core import copy_outcome
from supervisor.fleet.agent import AgentRefusal
from supervisor.orders import Abort, Feed, LiveSessions, OpenStream, Order, Punctuation, Recording, Refused, \
    SequenceStream
from wire.errors import ErrorCode, SupervisorError, shown

log = logging.getLogger(__name__)


class Fleet(Protocol):
    """What routing reads of the gateway."""

    agents: dict[str, Any]

    def serving(self, model_id: str) -> list[str]: ...

    def place_for(self, model_id: str, avoid: str | None = None) -> str: ...

    def load_target(self, model_id: str) -> str | None: ...


class OrderRouter:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.streams: dict[str, str] = {}                  # stream id -> node id
        self.sequences: dict[tuple[str, str], str] = {}    # (model, client sequence id) -> node id
        self.sequence_of: dict[str, tuple[str, str]] = {}  # stream id -> its sequence's key
        self._lock = threading.Lock()

    def submit(self, *orders: Order) -> list[Future]:
        return [self._send(order) for order in orders]

    def forget_node(self, node_id: str) -> None:
        """A node is gone: so are its streams (the next feed is STREAM_NOT_FOUND)."""
        with self._lock:
            self.streams = {s: n for s, n in self.streams.items() if n != node_id}
            self.sequences = {k: n for k, n in self.sequences.items() if n != node_id}
            self.sequence_of = {s: k for s, k in self.sequence_of.items() if s in self.streams}

    def _send(self, order: Order, avoid: str | None = None) -> Future:
        answer: Future = Future()
        try:
            node_id = self._node_for(order, avoid)
            sent = self.fleet.agents[node_id].order.remote(order).future()
        except SupervisorError as exc:
            answer.set_exception(exc)
            return answer
        except KeyError:   # the node left between the choice and the call
            answer.set_exception(self._crashed(order, "its node left the fleet"))
            return answer
        sent.add_done_callback(lambda done: self._answered(order, node_id, done, answer, retried=avoid is not None))
        return answer

    def _answered(self, order: Order, node_id: str, done: Future, answer: Future, retried: bool) -> None:
        error = done.exception()
        outcome: Any = None if error is not None else done.result()
        if error is not None and not retried and not isinstance(order, (Feed, Abort, SequenceStream)):
            # its node went away: a request that holds no state there is asked once more, of another node
            log.warning("fleet: node %s failed a %s request (%s); asking another node", node_id[:12],
                        order_model(order), type(error).__name__)
            self._send(order, avoid=node_id).add_done_callback(lambda again: copy_outcome(again, answer))
        elif error is not None:
            answer.set_exception(self._crashed(order, f"node {node_id[:12]}: {type(error).__name__}"))
        elif isinstance(outcome, AgentRefusal):
            if isinstance(order, (Feed, Abort)) and outcome.code in ("STREAM_NOT_FOUND", "STREAM_LOST"):
                self._ended(order.stream_id)   # expired or lost on its node: forgotten here too
            answer.set_exception(outcome.error())
        else:
            if isinstance(order, OpenStream) and outcome.stream is not None:
                with self._lock:
                    self.streams[outcome.stream.stream_id] = node_id
                    if order.sequence_id is not None:   # a restart: the node aborted the sequence's old stream
                        key = (order.model_id, order.sequence_id)
                        for old in [s for s, k in self.sequence_of.items() if k == key]:
                            self.streams.pop(old, None)
                            self.sequence_of.pop(old)
                        self.sequences[key] = node_id
                        self.sequence_of[outcome.stream.stream_id] = key
            elif isinstance(order, Abort) or isinstance(order, Feed) and order.is_final:
                self._ended(order.stream_id)
            answer.set_result(outcome)

    def _ended(self, stream_id: str) -> None:
        """A stream that finished, was aborted or is gone on its node: the gateway keeps no entry for it."""
        with self._lock:
            self.streams.pop(stream_id, None)
            self.sequences.pop(self.sequence_of.pop(stream_id, ("", "")), None)

    @staticmethod
    def _crashed(order: Order, why: str) -> SupervisorError:
        model_id = order_model(order)
        return SupervisorError(ErrorCode.MODEL_CRASHED, f"The node serving {model_id} went away",
                               f"{why}; retry: the model is placed again where it is required", model_type=model_id)

    def _node_for(self, order: Order, avoid: str | None = None) -> str:
        """A stream's node; else a node serving the model, least queued first; else the node its load in flight
        goes to; else where placement puts it (that node's supervisor cold-starts it, by its own admission)."""
        match order:
            case Feed(stream_id=stream_id) | Abort(stream_id=stream_id):
                node_id = self.streams.get(stream_id)
                if node_id is None:
                    raise SupervisorError(ErrorCode.STREAM_NOT_FOUND, "Stream not found",
                                          f"No open stream '{shown(stream_id)}' in the fleet: it was finished, "
                                          "aborted, expired, or its node was lost", stream_id=stream_id)
                return node_id
            case SequenceStream(model_id=model_id, sequence_id=sequence_id):
                node_id = self.sequences.get((model_id, sequence_id))
                if node_id is None:
                    raise SupervisorError(ErrorCode.STREAM_NOT_FOUND, "Sequence not found",
                                          f"No sequence '{shown(sequence_id)}' is open for {model_id}")
                return node_id
            case Punctuation() | Recording() | OpenStream() | LiveSessions() | Refused():
                model_id = order_model(order)
                serving = [n for n in self.fleet.serving(model_id) if n != avoid]
                if serving:
                    return serving[0]
                target = self.fleet.load_target(model_id)
                if target is not None and target in self.fleet.agents and target != avoid:
                    return target   # it queues there while the load placed on that node finishes
                return self.fleet.place_for(model_id, avoid)
        raise TypeError(f"not an order: {order!r}")


def order_model(order: Order) -> str:
    return order.model_ids[0] if isinstance(order, LiveSessions) else order.model_id
