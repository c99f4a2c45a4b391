"""Each model kind's Open Inference Protocol signature: the tensors its `infer` takes and answers."""

from __future__ import annotations

import msgspec


class TensorSpec(msgspec.Struct, frozen=True):
    """One input or output: `name`, `datatype` (BYTES, INT16, INT32) and `shape` (-1: any length)."""

    name: str
    datatype: str
    shape: list[int]


class Signature(msgspec.Struct, frozen=True):
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


AUDIO = TensorSpec("audio", "INT16", [-1])
TEXT = TensorSpec("text", "BYTES", [1])
PUNCTUATED = TensorSpec("punctuated_text", "BYTES", [1])

SIGNATURES = {
    "streaming_asr": Signature(inputs=(AUDIO,), outputs=(TEXT, PUNCTUATED)),
    "asr": Signature(inputs=(AUDIO,), outputs=(TEXT, PUNCTUATED, TensorSpec("timestamps", "INT32", [-1, 2]))),
    "punctuation": Signature(inputs=(TensorSpec("text", "BYTES", [-1]),), outputs=(TensorSpec("text", "BYTES", [-1]),)),
    "vad": Signature(inputs=(AUDIO,), outputs=(TensorSpec("segments", "INT32", [-1, 2]),)),
}
