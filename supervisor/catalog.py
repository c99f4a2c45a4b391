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
    hub_alias: str            # what funasr downloads when no directory is configured
    estimated_load_ms: int    # shown before a first load has been measured
    estimated_memory_mb: int  # Private_Dirty expected before a first load has been measured


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
            hub_alias="paraformer-zh-streaming",
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
            hub_alias="ct-punc",
            estimated_load_ms=12000,
            estimated_memory_mb=400,
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
