"""How an Open Inference Protocol `infer` maps onto the Supervisor, for each thing a kind answers (the tensors
themselves are on each `Kind`, in `supervisor.kinds`).

text (punctuation): `text` BYTES [-1] in, `text` BYTES (same shape) out, one request per element.
transcript (streaming_asr, asr): `audio` (INT16 PCM samples, 16 kHz mono; or BYTES [1]: a WAV file) in, `text`
  and, when asked for, `punctuated_text` out; an `asr` model adds `timestamps` INT32 [n, 2]. With Triton's
  `sequence_id` (streaming models) the request is one piece of a live stream and `text` is the transcript so
  far (final once `sequence_end` is set); without it, a whole recording.
segments (vad): `audio` in, `segments` INT32 [n, 2] out (start and end of each stretch of speech, in ms); with a
  `sequence_id`, the segments this piece closed.
"""

from __future__ import annotations

from typing import Any, Callable

import msgspec

from api.common.decode import decode_audio
from api.oip.bodies import Datatype, Parameters
from api.oip.tensors import Tensor, invalid
from api.common.deps import ModelWork
from wire.errors import ErrorCode, SupervisorError, shown
from api.oip.signatures import SIGNATURES
from supervisor.kinds import Kind

MAX_TEXTS = 64


class Output(msgspec.Struct, frozen=True):
    name: str
    datatype: Datatype
    shape: list[int]
    values: list[Any]   # flat, row-major: str for BYTES, int for INT32


class Outcome(msgspec.Struct, frozen=True):
    outputs: list[Output]
    cold_start: bool
    model_ms: float


Runner = Callable[[ModelWork, str, Tensor, Parameters, set[str]], Outcome]  # (.., model name, input, ..)


class Sequence(msgspec.Struct, frozen=True):
    """Triton's sequence parameters; `sequence_id` 0 or "" means the request is not part of a sequence."""

    sequence_id: str
    start: bool
    end: bool

    @classmethod
    def of(cls, parameters: Parameters) -> Sequence | None:
        given = parameters.get("sequence_id", 0)
        if given in (0, "") or isinstance(given, (bool, float)):
            return None
        return cls(str(given), flag(parameters, "sequence_start"), flag(parameters, "sequence_end"))


def flag(parameters: Parameters, name: str, default: bool = False) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"Bad parameter '{name}'", f"'{name}' must be true or false, got {shown(repr(value))}")
    return value


def within(size: int, limit: int, what: str, setting: str) -> None:
    """The same limits as the seed's routes (the v2 body itself may be larger: JSON samples take more room)."""
    if size > limit:
        raise SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} too large",
                              f"{what} is limited to {limit} bytes by [server] {setting} in the config")


def audio(work: ModelWork, tensor: Tensor) -> bytes:
    if tensor.datatype == "INT16":
        pcm = tensor.int16_bytes()
    elif tensor.datatype == "BYTES":
        files = tensor.byte_strings()
        if len(files) != 1:
            raise invalid("One recording per request", f"'audio' holds {len(files)} WAV files; send one")
        pcm = decode_audio(files[0], work.limits.audio_s, work.limits.decodes)
    else:
        raise invalid("Unsupported audio datatype", f"'audio' must be INT16 (16 kHz mono PCM samples) or BYTES "
                      f"[1] (an audio file: WAV, FLAC, MP3, OGG, WebM, M4A), got {tensor.datatype}")
    within(len(pcm), work.limits.audio_bytes, "Audio", "max_audio_mb")
    return pcm


def punctuation(work: ModelWork, model: str, tensor: Tensor, parameters: Parameters,
                wanted: set[str]) -> Outcome:
    if tensor.datatype != "BYTES":
        raise invalid("Unsupported text datatype", f"'text' must be BYTES (UTF-8), got {tensor.datatype}")
    texts = tensor.byte_strings()
    if len(texts) > MAX_TEXTS:
        raise invalid("Too many texts", f"{len(texts)} texts in one request; send at most {MAX_TEXTS}")
    for text in texts:
        within(len(text), work.limits.text_bytes, "Text", "max_text_kb")
    try:
        results = [work.flows.punctuate(text.decode(), model) for text in texts]
    except UnicodeDecodeError as exc:
        raise invalid("Text is not UTF-8", str(exc)) from None
    return Outcome([Output("text", "BYTES", tensor.shape, [r.text for r in results])],
                   any(r.cold_start for r in results), sum(r.model_ms for r in results))


def speech_to_text(work: ModelWork, model: str, tensor: Tensor, parameters: Parameters,
                   wanted: set[str]) -> Outcome:
    pcm, sequence = audio(work, tensor), Sequence.of(parameters)
    punctuate = flag(parameters, "punctuate", "punctuated_text" in wanted)
    stamps = None
    if sequence is not None:
        kind = work.supervisor.view(model).kind
        piece, cold_start = work.flows.feed_sequence(sequence.sequence_id, pcm, sequence.start, sequence.end,
                                                     model, punctuate, kind)
        text, punctuated, model_ms = piece.partial_text, piece.punctuated_text, piece.model_ms
    else:
        vad = flag(parameters, "vad") if "vad" in parameters else None
        hotwords = parameters.get("hotwords", "")
        if not isinstance(hotwords, str):
            raise invalid("Bad parameter 'hotwords'", "'hotwords' must be a string of space-separated words")
        whole = work.flows.transcribe(pcm, punctuate, vad, model, hotwords)
        text, punctuated, cold_start, model_ms = whole.text, whole.punctuated_text, whole.cold_start, whole.model_ms
        stamps = whole.timestamp
    outputs = [Output("text", "BYTES", [1], [text])]
    if punctuated is not None:
        outputs.append(Output("punctuated_text", "BYTES", [1], [punctuated]))
    if stamps is not None:
        outputs.append(Output("timestamps", "INT32", [len(stamps), 2], [t for pair in stamps for t in pair]))
    return Outcome(outputs, cold_start, model_ms)


def speech_segments(work: ModelWork, model: str, tensor: Tensor, parameters: Parameters,
                    wanted: set[str]) -> Outcome:
    pcm, sequence = audio(work, tensor), Sequence.of(parameters)
    if sequence is not None:
        piece, cold_start = work.flows.feed_sequence(sequence.sequence_id, pcm, sequence.start, sequence.end,
                                                     model, kind="vad")
        segments, model_ms = piece.segments, piece.model_ms
    else:
        found = work.flows.detect_speech(pcm, model)
        segments, cold_start, model_ms = found.segments, found.cold_start, found.model_ms
    return Outcome([Output("segments", "INT32", [len(segments), 2], [t for pair in segments for t in pair])],
                   cold_start, model_ms)


RUNNERS: dict[str, Runner] = {"text": punctuation, "transcript": speech_to_text, "segments": speech_segments}


def only_input(kind: Kind, model_id: str, given: list[Tensor]) -> Tensor:
    expected = SIGNATURES[kind.name].inputs[0].name
    if len(given) != 1 or given[0].name != expected:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Wrong inputs",
                              f"{model_id} takes one input, '{expected}'; got "
                              f"{[shown(t.name) for t in given] or 'none'}")
    return given[0]
