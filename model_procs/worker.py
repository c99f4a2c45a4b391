"""The model process: connect to the supervisor, load the engine, say Ready, serve until told to stop.

Runs as a forkserver child whose parent is the forkserver, not the supervisor, so PDEATHSIG cannot tie its
life to the supervisor's: a thread watches the supervisor's pidfd and exits the process when it goes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import threading
import time
from typing import Callable

import msgspec
import zmq

from wire import protocol
from wire.protocol import (Batch, Heartbeat, LoadFailed, LoadTimings, Progress, Punctuate, Ready, Replies, Reply,
                           RequestFailed, Shutdown, StreamDrop, StreamFeed, WorkerSpec)
from model_procs.devices import DeviceUnavailable, check_device
from model_procs.sources import (GENERATED_PREFIX, SourceUnavailable, damaged_file, discard, explain_write_error,
                                 resolve_source)
from wire.logs import configure as configure_logging

log = logging.getLogger(__name__)

OOM_SCORE_ADJ = 500  # of -1000..1000: a model process goes before any process at the default 0


def watch_supervisor(supervisor_pid: int) -> None:
    """Exit at once (no cleanup to run: the kernel frees everything) when the supervisor process ends."""
    try:
        pidfd = os.pidfd_open(supervisor_pid)
    except ProcessLookupError:
        os._exit(protocol.EXIT_SUPERVISOR_GONE)

    def wait_and_exit() -> None:
        select.select([pidfd], [], [])
        os._exit(protocol.EXIT_SUPERVISOR_GONE)

    threading.Thread(target=wait_and_exit, name="supervisor-watch", daemon=True).start()


def volunteer_for_the_oom_killer(score: int = OOM_SCORE_ADJ) -> None:
    """When memory runs out, the kernel kills the process with the highest score: make it a model process (it
    costs one model, which the supervisor reports and may restart) rather than the supervisor or the forkserver
    (which would cost every model). Raising one's own score needs no privilege."""
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as adj:
            adj.write(str(score))
    except OSError:
        pass


def malloc_trim() -> float:
    """Give back the heap funasr's loader leaves behind (it holds ~3 copies of the weights while loading)."""
    started = time.monotonic()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    return (time.monotonic() - started) * 1000


def load(spec: WorkerSpec, started: float, progress: Callable[[str], None]):
    """Resolve the source, build and warm the engine; return (engine, Ready)."""
    imports_began = time.monotonic()
    import torch  # noqa: F401  (already imported when the forkserver preloaded it)

    torch.set_num_threads(spec.threads)
    check_device(spec.device)
    weights_began = time.monotonic()
    progress("finding the model files")
    model_dir, cached = resolve_source(spec.model_id, spec.kind, spec.source, spec.cache_dir)
    progress("loading weights")
    engine, built, runtime, model_dir, cached = build_checked(spec, model_dir, cached, progress)
    weights_done = time.monotonic()
    trim_ms = malloc_trim()
    progress("warming up")
    warmup_began = time.monotonic()
    engine.warm_up()
    done = time.monotonic()
    timings = LoadTimings(
        process_start_ms=(started - spec.spawned_at) * 1000,
        imports_ms=(weights_began - imports_began) * 1000,
        weights_ms=(weights_done - weights_began) * 1000 - runtime.export_ms - runtime.sessions_ms,
        trim_ms=trim_ms,
        warmup_ms=(done - warmup_began) * 1000,
        total_ms=(done - spec.spawned_at) * 1000,
        onnx_export_ms=runtime.export_ms,
        onnx_sessions_ms=runtime.sessions_ms,
    )
    return engine, Ready(pid=os.getpid(), timings=timings, resolved_source=model_dir, source_was_cached=cached,
                         loader=built.loader, loader_note=built.fallback_reason,
                         weights_files=((built.weights_file,) if built.weights_file else ()) + runtime.files,
                         engine=runtime.engine, quantize=runtime.quantize, engine_note=runtime.note)


def build_checked(spec: WorkerSpec, model_dir: str, cached: bool, progress: Callable[[str], None]):
    """Build the engine; when it fails on a damaged checkpoint, say which file, and regenerate a generated
    model once (a cached copy that a full disk or a crash truncated)."""
    from model_procs.engines import build_engine

    def build(directory: str):
        return build_engine(spec.engine, directory, spec.device, spec.threads, spec.cache_dir, spec.loader,
                            spec.runtime, spec.quantize, progress)

    try:
        return *build(model_dir), model_dir, cached
    except Exception:
        damaged = damaged_file(model_dir)
        if damaged is None:
            raise
        if not (cached and spec.source.startswith(GENERATED_PREFIX)):
            raise SourceUnavailable(f"the model file {damaged} is damaged",
                                    "replace it with a good copy of the model") from None
    log.warning("model %s: cached %s is damaged; regenerating it once", spec.model_id, damaged)
    progress("regenerating a damaged cached model")
    discard(model_dir)
    model_dir, cached = resolve_source(spec.model_id, spec.kind, spec.source, spec.cache_dir)
    return *build(model_dir), model_dir, cached


def connect(context: zmq.Context, spec: WorkerSpec, identity: bytes) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.setsockopt(zmq.LINGER, 2000)  # let the last message (Ready/LoadFailed) out before exit
    socket.connect(spec.endpoint)
    return socket


def start_heartbeats(context: zmq.Context, spec: WorkerSpec, stop: threading.Event) -> threading.Thread:
    """Beat from a thread with its own socket (ZeroMQ sockets are per thread) until `stop` is set."""
    def beat() -> None:
        socket = connect(context, spec, spec.identity + protocol.HEARTBEAT_SUFFIX)
        frame = protocol.encoder.encode(Heartbeat(pid=os.getpid()))
        while not stop.is_set():
            socket.send(frame, zmq.NOBLOCK)
            stop.wait(protocol.HEARTBEAT_INTERVAL_S)
        socket.close(linger=0)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    return thread


def serve(socket: zmq.Socket, engine) -> None:
    """Answer the supervisor until it says Shutdown. Undecodable frames are logged and dropped."""
    while True:
        frame = socket.recv()
        try:
            message = protocol.worker_decoder.decode(frame)
        except msgspec.DecodeError:
            log.warning("dropped an undecodable message (%d bytes)", len(frame))
            continue
        match message:
            case Shutdown():
                return
            case StreamDrop(stream_id=stream_id):
                engine.drop(stream_id)
            case Batch(items=items):
                socket.send(protocol.encoder.encode(Replies(items=tuple(answer(engine, list(items))))))
            case _:
                socket.send(protocol.encoder.encode(answer(engine, [message])[0]))


def answer(engine, requests: list[Punctuate | StreamFeed]) -> list[Reply | RequestFailed]:
    """Run requests (several: one batch) on the engine; the time and CPU they took are shared among them by
    their sizes. A request that breaks the model fails alone; the process serves on."""
    began, cpu_began = time.monotonic(), time.process_time()
    try:
        outcomes = run(engine, requests)
    except Exception as exc:  # a batch the engine could not even split: every item fails, the process lives
        log.exception("a batch of %d requests failed", len(requests))
        outcomes = [exc] * len(requests)
    elapsed_ms, cpu_ms = (time.monotonic() - began) * 1000, (time.process_time() - cpu_began) * 1000
    sizes = [len(r.text) if isinstance(r, Punctuate) else len(r.pcm) for r in requests]
    total = sum(sizes)
    replies: list[Reply | RequestFailed] = []
    for request, outcome, size in zip(requests, outcomes, sizes):
        share = size / total if total else 1 / len(requests)
        if isinstance(outcome, Exception):
            replies.append(RequestFailed(request_id=request.request_id,
                                         message=f"{type(outcome).__name__}: {outcome}"))
            continue
        replies.append(Reply(request_id=request.request_id, text=outcome.text, partial_text=outcome.partial_text,
                             segments=list(outcome.segments), words=list(outcome.words), tags=outcome.tags,
                             speech_from_ms=outcome.speech_from, compute_ms=elapsed_ms * share,
                             cpu_ms=cpu_ms * share))
    return replies


def run(engine, requests: list[Punctuate | StreamFeed]) -> list:
    """What the engine heard for each request (engines.Heard), or the exception that request raised."""
    from model_procs.engines import pcm_to_float  # numpy: the worker's import, not the supervisor's
    from model_procs.heard import Feed, Heard

    texts = [r for r in requests if isinstance(r, Punctuate)]
    feeds = [r for r in requests if isinstance(r, StreamFeed)]
    if texts and feeds:
        raise TypeError("a batch mixes texts and audio")
    if texts:
        return [text if isinstance(text, Exception) else Heard(text=text)
                for text in engine.punctuate_many([r.text for r in texts])]
    return engine.feed_many([Feed(r.stream_id, pcm_to_float(r.pcm), r.is_final, r.hotwords) for r in feeds])


def run_worker(spec: WorkerSpec) -> None:
    """Process entry point (the forkserver child's target)."""
    started = time.monotonic()
    watch_supervisor(spec.supervisor_pid)
    volunteer_for_the_oom_killer()
    configure_logging("WARNING", spec.log_format)  # funasr's import left an INFO root handler: replace it
    os.environ.setdefault("MODELSCOPE_CACHE", os.path.join(spec.cache_dir, "hub"))
    context = zmq.Context()
    socket = connect(context, spec, spec.identity)
    try:
        engine, ready = load(spec, started, lambda phase: socket.send(protocol.encoder.encode(Progress(phase=phase))))
    except (SourceUnavailable, DeviceUnavailable) as exc:
        fail(socket, context, exc.reason, exc.hint)
    except OSError as exc:
        explained = explain_write_error(exc) or SourceUnavailable(f"{type(exc).__name__}: {exc}", "see the server log")
        fail(socket, context, explained.reason, explained.hint)
    except Exception as exc:  # any loader error is reported, not raised: the supervisor decides what next
        fail(socket, context, f"{type(exc).__name__}: {exc}", "check that the source is a FunASR model of this kind")
    stop = threading.Event()
    heartbeats = start_heartbeats(context, spec, stop)
    socket.send(protocol.encoder.encode(ready))
    serve(socket, engine)
    stop.set()
    heartbeats.join()
    socket.close()
    context.term()


def fail(socket: zmq.Socket, context: zmq.Context, reason: str, hint: str) -> None:
    socket.send(protocol.encoder.encode(LoadFailed(pid=os.getpid(), reason=reason, hint=hint)))
    socket.close()
    context.term()
    os._exit(protocol.EXIT_LOAD_FAILED)
