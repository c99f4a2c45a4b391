"""Wire protocol between the supervisor (ROUTER) and a model process (DEALER): tagged msgspec Structs.

One union per direction, one module-level decoder each; both sides `match` on the decoded type.
This module imports msgspec only, so the supervisor can use it without torch or funasr.
"""

from __future__ import annotations

import msgspec

# Exit codes are a protocol too: the supervisor tells a boot error from a crash by them.
EXIT_OK = 0
EXIT_LOAD_FAILED = 3
EXIT_SUPERVISOR_GONE = 4


class WorkerSpec(msgspec.Struct, frozen=True):
    """Everything a model process needs to start; pickled once into the forkserver child."""

    model_id: str
    kind: str                 # its kind's name (supervisor.kinds): what a `generated:` source generates
    engine: str               # its kind's engine class in model_procs.engines
    source: str               # absolute model directory, hub alias, or "generated:<size>"
    device: str
    threads: int
    endpoint: str             # ipc:// address of the supervisor's ROUTER
    identity: bytes           # this process's ZeroMQ routing id
    supervisor_pid: int
    cache_dir: str
    spawned_at: float         # time.monotonic() in the supervisor (CLOCK_MONOTONIC is system-wide)
    log_format: str = "text"  # "text" or "json", as the server logs
    loader: str = "mapped"    # "mapped" (weights mapped from the file) or "automodel" (copied by funasr)
    runtime: str = "torch"    # the configured `engine`: "torch" or "onnx" (ONNX Runtime)
    quantize: str = "none"    # onnx: "none" or "int8"


# supervisor -> worker
class Shutdown(msgspec.Struct, frozen=True, tag="shutdown"):
    """Finish, release the model and exit 0."""


class Punctuate(msgspec.Struct, frozen=True, tag="punctuate"):
    request_id: int
    text: str


class StreamFeed(msgspec.Struct, frozen=True, tag="stream_feed"):
    """Raw 16-bit LE mono 16 kHz PCM for one stream; the worker buffers it to 600 ms chunks."""

    request_id: int
    stream_id: str
    pcm: bytes
    is_final: bool = False
    hotwords: str = ""        # asr: words to bias towards, space-separated (SeACo-Paraformer)


class StreamDrop(msgspec.Struct, frozen=True, tag="stream_drop"):
    """Forget a stream's cache. No reply: it may be sent while the process is busy with another request."""

    request_id: int
    stream_id: str


class Batch(msgspec.Struct, frozen=True, tag="batch"):
    """Several requests in one hand-off, answered by one `Replies` (each item by its own request id): the
    engine runs what it can of them as one forward pass (Triton's dynamic and sequence batching)."""

    items: tuple[Punctuate | StreamFeed, ...]


ToWorker = Shutdown | Punctuate | StreamFeed | StreamDrop | Batch


# worker -> supervisor
class LoadTimings(msgspec.Struct, frozen=True):
    """Where a load's time went, in ms, as the worker measured it."""

    process_start_ms: float   # spawn request -> worker code running
    imports_ms: float         # torch + funasr (≈0 when the forkserver preloaded them)
    weights_ms: float         # AutoModel: build the classes, read the checkpoint (not the onnx phases)
    trim_ms: float            # malloc_trim(0)
    warmup_ms: float          # one inference call
    total_ms: float           # spawn request -> Ready sent
    onnx_export_ms: float = 0.0    # engine onnx: exporting (and quantising) into the cache; 0 when cached
    onnx_sessions_ms: float = 0.0  # engine onnx: creating the ONNX Runtime sessions


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    pid: int
    timings: LoadTimings
    resolved_source: str      # the directory funasr loaded
    source_was_cached: bool   # the model files were on disk before this load
    loader: str = "automodel"           # how the weights were loaded: "mapped" or "automodel"
    weights_files: tuple[str, ...] = ()  # the files its weights are mapped from (shared by replicas): the
                                         # checkpoint (mapped loader) and the ONNX parts' pre-packed weights
    loader_note: str | None = None      # why the mapped loader was not used
    engine: str = "torch"               # what runs the model: "torch" or "onnx"
    quantize: str = "none"
    engine_note: str | None = None      # why engine onnx was asked for and torch runs it


class LoadFailed(msgspec.Struct, frozen=True, tag="load_failed"):
    pid: int
    reason: str               # one line: what went wrong
    hint: str                 # one line: what to set or do about it


class Reply(msgspec.Struct, frozen=True, tag="reply"):
    request_id: int
    text: str                 # punctuated text, new stream text, or a transcript
    partial_text: str = ""    # streams: all text so far
    compute_ms: float = 0.0   # time spent in the model (a batch's: each item's share)
    cpu_ms: float = 0.0       # the process's CPU time for it (a batch's: shared by the items' sizes)
    segments: list[tuple[int, int]] = []  # VAD: speech segments this audio closed, [start_ms, end_ms]
    words: list[tuple[str, int, int]] = []  # asr: each token with its [start_ms, end_ms] in the audio
    tags: dict[str, str] = {}               # asr (SenseVoice): language, emotion, event
    speech_from_ms: int = -1  # VAD: start of speech heard and not yet closed (-1: none open)


class RequestFailed(msgspec.Struct, frozen=True, tag="request_failed"):
    request_id: int
    message: str


class Replies(msgspec.Struct, frozen=True, tag="replies"):
    """The answers to one `Batch`, in its order."""

    items: tuple[Reply | RequestFailed, ...]


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat"):
    """Sent every HEARTBEAT_INTERVAL_S from the worker's own thread, on a socket of its own (`<identity>/hb`):
    it proves the process is alive, not that a request is progressing (request deadlines check that)."""

    pid: int


class Progress(msgspec.Struct, frozen=True, tag="progress"):
    """A load's current phase, for `GET /model/load/{id}` and the CLI's live progress."""

    phase: str


HEARTBEAT_INTERVAL_S = 0.5
HEARTBEAT_SUFFIX = b"/hb"

ToSupervisor = Ready | LoadFailed | Reply | RequestFailed | Replies | Heartbeat | Progress

worker_decoder = msgspec.msgpack.Decoder(ToWorker)
supervisor_decoder = msgspec.msgpack.Decoder(ToSupervisor)
encoder = msgspec.msgpack.Encoder()
