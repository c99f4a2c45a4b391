"""Lifecycle supervisor: one OS process per loaded FunASR model.

Data flow (one request, one model)::

    API thread (waitress)            Supervisor                I/O thread              model process
    ---------------------            ----------                ----------              -------------
    load("punctuation") ──────────► slot.lock: unloaded→loading
                                     LoadJob(load_id) ───────► forkserver spawn ─────► run_worker()
                                     driver thread waits                                AutoModel(...)
                                     on worker.ready  ◄──────── ROUTER recv Ready ◄──── DEALER send Ready
                                     slot: loading→loaded
    unload("punctuation") ─────────► slot: loaded→unloading
                                     read Private_Dirty ─────► ROUTER send Shutdown ─► worker exits
                                     wait exited (→SIGTERM→SIGKILL)  sentinel readable
                                     slot: unloading→unloaded

Only the I/O thread touches the ZeroMQ sockets and the process sentinels; API threads hand it work through a
queue and wait on futures or events with deadlines. Nothing here imports torch or funasr: the forkserver and
the model processes do.
"""
