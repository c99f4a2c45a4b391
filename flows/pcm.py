"""The one check every raw-PCM input gets before it reaches a model."""

from __future__ import annotations

from wire.errors import ErrorCode, SupervisorError


def check_pcm(pcm: bytes, allow_empty: bool = False) -> None:
    if not pcm and not allow_empty:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Empty audio", "send 16-bit little-endian mono 16 kHz PCM")
    if len(pcm) % 2:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Odd audio byte count",
                              f"{len(pcm)} bytes is not a whole number of 16-bit samples")
