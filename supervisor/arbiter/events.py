"""Facts the parts report up to the arbiter, which routes each one (`Arbiter.route`, one `match`).

Commands go down (the arbiter and Lifecycle call the parts); facts come up as these events, so no part calls
back into the one above it. They carry the arbiter's own objects, and live only on its thread.
"""

from __future__ import annotations

import msgspec

from supervisor.replica import Model, Replica
from supervisor.streams import Stream
from wire.protocol import Ready


class Event(msgspec.Struct, frozen=True):
    model: Model


# -- from Replicas ------------------------------------------------------------------------------------------
class ReplicaReady(Event, frozen=True):
    """A process loaded its model and its memory was read: it may take work."""
    replica: Replica
    ready: Ready


class ReplicaGone(Event, frozen=True):
    """A process ended and was reaped (asked to, killed, or on its own)."""
    replica: Replica


class OverMemoryCap(Event, frozen=True):
    replica: Replica
    unique_mb: float
    cap_mb: float


# -- from the Dispatcher -------------------------------------------------------------------------------------
class WorkDone(Event, frozen=True):
    """A replica finished a piece of work or let go of a stream: a drain may be complete."""
    replica: Replica


class RequestStuck(Event, frozen=True):
    replica: Replica
    timeout_s: float


class Unreachable(Event, frozen=True):
    """Its socket refused a message: the process is gone or wedged."""
    replica: Replica


# -- from Housekeeping ---------------------------------------------------------------------------------------
class HeartbeatLost(Event, frozen=True):
    replica: Replica
    silent_s: float


class StreamExpired(Event, frozen=True):
    stream: Stream


class QueueOverdue(Event, frozen=True):
    """Requests waited in the queue of a serving model past their deadline."""


class ScaleUp(Event, frozen=True):
    waited_ms: float


class ReplicaIdle(Event, frozen=True):
    """One of several replicas idle past keep_alive_s: it can go."""
    replica: Replica
    idle_s: float


class ModelIdle(Event, frozen=True):
    """Every replica idle past keep_alive_s and min_replicas 0: the model can be unloaded."""
    idle_s: float


# -- from Lifecycle ------------------------------------------------------------------------------------------
class LoadTimedOut(Event, frozen=True):
    replica: Replica
    timeout_s: float


KillFact = OverMemoryCap | RequestStuck | Unreachable | HeartbeatLost | LoadTimedOut
