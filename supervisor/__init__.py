"""Lifecycle supervisor: each model runs as 0..max_replicas OS processes, owned by one arbiter thread.

Data flow (one request, one model)::

    API thread (waitress)         arbiter thread (event_loop + arbiter)              replica process
    ---------------------         -------------------------------------              ---------------
    punctuate(text) ───call────►  Operations.punctuate: Work into the model's queue
        waits on a Future          (not serving? Lifecycle.load: unloaded→loading,
                                    spawn off the loop ─────────────────────────────► run_worker(): load
                                    Ready ◄──── ROUTER ◄──────────────────────────────── DEALER Ready
                                    memory read off the loop; loading→loaded)
                                   Dispatcher.pump: idle replica ─ ROUTER ─ Punctuate ──► engine
                                   Reply ◄──────────────────────────────────────────── DEALER Reply
                                   finish: counters, publish Snapshot, then settle
        ◄──────── Future ───────── (after the snapshot, so a reader sees the new state)

    unload(m) ──call──► loaded→unloading; queued work answered; each replica drains, its Private_Dirty is
                        read off the loop, then Shutdown → SIGTERM → SIGKILL through its pidfd; the pidfd turns
                        readable, the reap runs off the loop; unloading→unloaded; the Future settles.

Only the arbiter thread changes lifecycle state or touches the ZeroMQ socket; everyone else calls it and waits,
or reads the immutable Snapshot it publishes. Slow work (spawn, smaps, reap, cache size) runs on a small
executor and comes back as an event. Nothing here imports torch or funasr: the forkserver and the replicas do.
"""
