"""The arbiter, as a tree: commands go down, facts come up.

    Arbiter (arbiter.py)          owns the model table; routes process messages and the parts' facts (one match)
      ├─ Operations               what callers ask (load, unload, queue work, register), run on the loop
      ├─ Lifecycle                loads, unloads, restarts, kills: the one part that calls the others
      │    ├─ Replicas            start, watch, stop processes          → ReplicaReady, ReplicaGone, OverMemoryCap
      │    ├─ Drainer             drain a replica, then stop it
      │    ├─ Dispatcher          queues and routing                     → WorkDone, RequestStuck, Unreachable
      │    └─ Admission           does a model fit; whom to evict
      ├─ Housekeeping             periodic rules over the table          → HeartbeatLost, ScaleUp, ModelIdle, ...
      └─ kills.kill_reason        the one verdict on whether a fact means killing a process

Each part gets only what it uses (the `Loop` protocol, the Spawner, the model table, the Board of shared
bookkeeping, its settings) and reports facts as `events` through a callback. The loop is injected: the real
`event_loop.EventLoop`, or a stepped one in virtual time for tests.
"""
