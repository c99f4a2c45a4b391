"""The one place that decides whether a fact about a process means killing it, and what its error says.

Every kill the supervisor makes on its own (not an unload: that asks first) starts as a fact some part saw:
a request past its deadline, a silent heartbeat, memory over a cap, a dead socket, a load past its timeout.
The reason is remembered on the replica, so `last_error` and the failed requests say why the process went.
"""

from __future__ import annotations

from supervisor.arbiter.events import (HeartbeatLost, KillFact, LoadTimedOut, OverMemoryCap, RequestStuck,
                                       Unreachable)


def kill_reason(fact: KillFact) -> str | None:
    """Why `fact` condemns its process, or None when it does not (any more)."""
    replica = fact.replica
    match fact:
        case RequestStuck(timeout_s=timeout_s):
            return f"stuck on a request for more than request_timeout_s={timeout_s:g} s"
        case HeartbeatLost(silent_s=silent_s) if replica.ready and not replica.stopping:
            return f"no heartbeat for {silent_s:.1f} s (hung)"
        case OverMemoryCap(unique_mb=unique_mb, cap_mb=cap_mb) if not replica.stopping:
            return f"its memory ({unique_mb:.0f} MB) exceeded max_memory_mb={cap_mb:g}"
        case Unreachable():
            return "its socket was unreachable"
        case LoadTimedOut():
            return "load timeout"
    return None
