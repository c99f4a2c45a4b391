"""FunASR engines: one class per model kind, each on funasr's `AutoModel`.

Each answers a batch of requests in one call (`punctuate_many`, `feed_many`): punctuation texts run their forwards
padded into one batch, in torch or ONNX Runtime (`Lockstep` over funasr's own loop), offline recordings go to
funasr's batched `generate`, the streaming model in ONNX Runtime stacks its streams' chunks into one graph call
(`onnx_batching`), and in torch stream engines run their streams' pieces one after another (funasr's torch layers
take one stream's cache dicts). A batch answers exactly what its items alone would.
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple, Protocol

import numpy as np

from model_procs.heard import Feed, Heard, Outcome, StreamEngine, attempt
from wire.audio import SAMPLE_RATE
from model_procs.onnx_batching import GatheredSessions
from model_procs.lockstep import Lockstep
from model_procs.offline_asr import OfflineAsrEngine

CHUNK_SAMPLES = 9600          # 600 ms, the streaming Paraformer's chunk_size [0, 10, 5]
STREAM_OPTIONS = {"chunk_size": [0, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}
WARMUP_TEXT = "今天天气很好我们一起去公园散步吧"
PCM_SCALE = 1.0 / 32768

log = logging.getLogger(__name__)


class Engine(Protocol):
    def warm_up(self) -> None: ...


class Built(NamedTuple):
    """A loaded AutoModel and how its weights came: `weights_file` is the mapped file (None when copied)."""

    automodel: object
    loader: str                    # "mapped" or "automodel"
    weights_file: str | None
    fallback_reason: str | None    # why the mapped loader was not used


def load_automodel(model_dir: str, device: str, threads: int, cache_dir: str, loader: str) -> Built:
    """The one way we build a model: absolute directory, no update check (it calls PyPI with no timeout).
    By default the weights are mapped from the checkpoint (mapped_loader); where that cannot be proved
    identical, or `loader = "automodel"`, funasr loads them itself, without the random init it overwrites."""
    from model_procs.mapped_loader import NotMappable, mapped_automodel

    reason = "loader = \"automodel\" in the configuration"
    if loader == "mapped":
        try:
            automodel, weights_file = mapped_automodel(model_dir, device, threads, cache_dir)
            return Built(automodel, "mapped", weights_file, None)
        except NotMappable as exc:
            reason = str(exc)
            log.warning("%s: weights not mapped (%s); loading them with AutoModel's own loader", model_dir, reason)
    return Built(plain_automodel(model_dir, device, threads), "automodel", None, reason)


def plain_automodel(model_dir: str, device: str, threads: int):
    """funasr's own load, minus the random init that the checkpoint overwrites (see fast_init)."""
    from funasr import AutoModel

    from model_procs.fast_init import build_without_random_init

    return build_without_random_init(lambda: AutoModel(
        model=model_dir, disable_update=True, device=device, ncpu=threads, disable_pbar=True, disable_log=True,
        log_level="WARNING"))


def pcm_to_float(pcm: bytes) -> np.ndarray:
    """16-bit little-endian PCM to float32 in [-1, 1), as funasr's frontends expect."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) * PCM_SCALE


class PunctuationEngine:
    """CT-Punc: stateless, one text in, one punctuated text out. Several texts run funasr's own loop each, their
    forwards padded into one batch (torch, or the ONNX graph, exported with a text axis)."""

    def __init__(self, model, runtime: str = "torch") -> None:
        self.model = model
        network = model.model
        self.lockstep = Lockstep(network.punc_forward, lambda calls: padded_forward(network.punc_forward_one, calls))
        network.punc_forward_one, network.punc_forward = network.punc_forward, self.lockstep.call

    def punctuate(self, text: str) -> str:
        result = self.model.generate(input=text, disable_pbar=True)
        return result[0]["text"] if result else ""

    def punctuate_many(self, texts: list[str]) -> list[str | Exception]:
        if len(texts) == 1:
            return [attempt(self.punctuate, text) for text in texts]
        return self.lockstep.run(self.punctuate, texts)

    def warm_up(self) -> None:
        self.punctuate(WARMUP_TEXT)


def padded_forward(forward: Callable, calls: list[dict]) -> list[tuple]:
    """CT-Punc's `punc_forward(text, text_lengths)` of several calls as one: token ids padded to the longest,
    each call's logits cut back to its own length (the encoder masks the padding)."""
    import torch

    lengths = [int(call["text_lengths"][0]) for call in calls]
    first = calls[0]["text"]
    text = first.new_zeros((len(calls), max(lengths)))
    for row, (call, length) in enumerate(zip(calls, lengths)):
        text[row, :length] = call["text"][0, :length]
    logits, _ = forward(text=text, text_lengths=torch.tensor(lengths, dtype=calls[0]["text_lengths"].dtype,
                                                             device=first.device))
    return [(logits[row:row + 1, :length], None) for row, length in enumerate(lengths)]


class AudioStream:
    """One live stream: the model's cache (tensors, never sent over the wire), unfed samples, text so far."""

    def __init__(self) -> None:
        self.cache: dict = {}
        self.pending = np.zeros(0, dtype=np.float32)
        self.text = ""


class StreamingAsrEngine(StreamEngine):
    """Paraformer-zh-streaming fed in exact 600 ms chunks, whatever sizes the audio arrives in."""

    def __init__(self, model, runtime: str = "torch") -> None:
        self.model = model
        self.streams: dict[str, AudioStream] = {}
        self.gathered: GatheredSessions | None = None
        if runtime == "onnx":   # the streaming graphs have a stream axis: a batch's chunks run as one call
            self.gathered = GatheredSessions()
            for part in (model.model.encoder.forward_chunk, model.model.decoder.forward_chunk):
                part.session = self.gathered.wrap(part.session)

    def feed_many(self, feeds: list[Feed]) -> list[Outcome]:
        """With ONNX Runtime, each stream's piece on a thread of its own, their graph calls stacked; with torch,
        one after another (funasr's torch layers take one stream's cache dicts)."""
        if self.gathered is None or len(feeds) == 1:
            return super().feed_many(feeds)
        return self.gathered.lockstep.run(lambda feed: self.feed(*feed), feeds)

    def feed(self, stream_id: str, samples: np.ndarray, is_final: bool, hotwords: str = "") -> Heard:
        """Text new from this call, and all text so far; a final feed flushes and ends the stream."""
        stream = self.streams.setdefault(stream_id, AudioStream())
        audio = np.concatenate([stream.pending, samples])
        usable = len(audio) if is_final else len(audio) - len(audio) % CHUNK_SAMPLES
        new_text = []
        for start in range(0, usable, CHUNK_SAMPLES):
            last = is_final and start + CHUNK_SAMPLES >= usable
            new_text.append(self._chunk(stream, audio[start:start + CHUNK_SAMPLES], last))
        if is_final and usable == 0:
            new_text.append(self._chunk(stream, np.zeros(0, dtype=np.float32), True))
        stream.pending = audio[usable:]
        stream.text += "".join(new_text)
        if is_final:
            del self.streams[stream_id]
        return Heard("".join(new_text), stream.text)

    def _chunk(self, stream: AudioStream, chunk: np.ndarray, is_final: bool) -> str:
        result = self.model.generate(input=chunk, cache=stream.cache, is_final=is_final, disable_pbar=True,
                                     **STREAM_OPTIONS)
        return "".join(item.get("text", "") for item in result)

    def drop(self, stream_id: str) -> None:
        self.streams.pop(stream_id, None)

    def transcribe(self, samples: np.ndarray) -> str:
        """A whole recording through the same streaming path as a live stream, so both give the same text."""
        return self.feed("__transcribe__", samples, is_final=True).text

    def warm_up(self) -> None:
        self.transcribe(np.zeros(CHUNK_SAMPLES, dtype=np.float32))


class VadStream:
    """One stream's VAD state: the model's cache, a segment whose end is not heard yet, and held-back samples."""

    def __init__(self) -> None:
        self.cache: dict = {}
        self.open_start: int | None = None
        self.held = np.zeros(0, dtype=np.float32)
        self.heard = 0  # samples fed: a segment never ends past them (the last call may be padded)


class VadEngine(StreamEngine):
    """FSMN-VAD, fed audio of any length as it comes. The model reports a segment as it opens (`[start, -1]`)
    and closes (`[-1, end]`); this answers closed segments only. FunASR's published segments use a fixed
    end-of-speech silence of 800 ms (funasr 1.4.16 otherwise turns on a dynamic schedule)."""

    OPTIONS = {"max_end_silence_time": 800, "is_streaming_input": True, "disable_pbar": True}
    MIN_CHUNK_MS = 200
    HOLD_SAMPLES = 160  # 10 ms kept back from each feed, so the final one always has audio to flush with
    MIN_CALL_SAMPLES = 1600  # 100 ms: fewer gives funasr no feature frame to time (ZeroDivisionError)

    def __init__(self, model, runtime: str = "torch") -> None:
        self.model = model
        self.streams: dict[str, VadStream] = {}

    def feed(self, stream_id: str, samples: np.ndarray, is_final: bool, hotwords: str = "") -> Heard:
        stream = self.streams.setdefault(stream_id, VadStream())
        stream.heard += len(samples)
        audio = np.concatenate([stream.held, samples])
        usable = len(audio) if is_final else max(len(audio) - self.HOLD_SAMPLES, 0)
        waiting = len(stream.cache.get("prev_samples", ()))  # what the model kept from the last call
        if waiting + usable < self.MIN_CALL_SAMPLES:  # funasr divides by the audio's duration in frames
            if not is_final:
                usable = 0
            elif waiting + usable:  # the end of a stream shorter than that: pad it with silence
                audio = np.concatenate([audio, np.zeros(self.MIN_CALL_SAMPLES - waiting - usable, np.float32)])
                usable = len(audio)
        stream.held = audio[usable:]
        closed: list[tuple[int, int]] = []
        if usable:
            # one model chunk per call: the model keeps what does not fill a chunk for the next call
            chunk_ms = max(self.MIN_CHUNK_MS, usable * 1000 // SAMPLE_RATE // 10 * 10)
            result = self.model.generate(input=audio[:usable], cache=stream.cache, is_final=is_final,
                                         chunk_size=chunk_ms, **self.OPTIONS)
            for start, end in result[0]["value"] if result else []:
                closed += self._close(stream, int(start), min(int(end), stream.heard * 1000 // SAMPLE_RATE))
        if is_final:
            del self.streams[stream_id]
        opened = -1 if is_final or stream.open_start is None else stream.open_start
        return Heard(segments=tuple(closed), speech_from=opened)

    @staticmethod
    def _close(stream: VadStream, start: int, end: int) -> list[tuple[int, int]]:
        if start >= 0 and end >= 0:
            return [(start, end)]
        if start >= 0:
            stream.open_start = start
        elif end >= 0 and stream.open_start is not None:
            opened, stream.open_start = stream.open_start, None
            return [(opened, end)]
        return []

    def drop(self, stream_id: str) -> None:
        self.streams.pop(stream_id, None)

    def warm_up(self) -> None:
        self.feed("__warmup__", np.zeros(SAMPLE_RATE, dtype=np.float32), is_final=True)


class Runtime(NamedTuple):
    """What runs the model's heavy parts, and what choosing it cost during the load."""

    engine: str = "torch"          # "torch", or "onnx" (ONNX Runtime)
    quantize: str = "none"
    note: str | None = None        # why onnx was asked for and torch runs the model
    export_ms: float = 0.0
    sessions_ms: float = 0.0
    files: tuple[str, ...] = ()    # what its ONNX Runtime sessions map (shared by replicas)


def build_engine(engine: str, model_dir: str, device: str, threads: int, cache_dir: str, loader: str,
                 runtime: str = "torch", quantize: str = "none",
                 progress: Callable[[str], None] = lambda phase: None) -> tuple[Engine, Built, Runtime]:
    """`engine`: the model kind's engine class, by name (supervisor.kinds); `runtime`: the configured engine."""
    engine_class = ENGINES.get(engine)
    if engine_class is None:
        raise ValueError(f"no engine class {engine!r} in model_procs.engines")
    built = load_automodel(model_dir, device, threads, cache_dir, loader)
    chosen = Runtime()
    if runtime == "onnx":
        chosen = onnx_runtime(built, device, threads, cache_dir, quantize, progress)
    return engine_class(built.automodel, runtime=chosen.engine), built, chosen


def onnx_runtime(built: Built, device: str, threads: int, cache_dir: str, quantize: str,
                 progress: Callable[[str], None]) -> Runtime:
    """ONNX Runtime in place of the model's heavy parts; where that cannot be done or proved, torch stays,
    and the reason is logged and shown (`details.engine_note`)."""
    from model_procs.onnx_engine import OnnxUnavailable, install_onnx

    try:
        if device != "cpu":
            raise OnnxUnavailable(f"the ONNX engine runs on the CPU here, not on {device}")
        installed = install_onnx(built.automodel, cache_dir, threads, quantize, progress)
    except OnnxUnavailable as exc:
        log.warning("model at %s: the ONNX engine is not used (%s); torch runs it", built.weights_file or "", exc)
        return Runtime(note=str(exc))
    return Runtime("onnx", quantize, None, installed.export_ms, installed.session_ms, installed.files)


ENGINES: dict[str, type] = {cls.__name__: cls for cls in (StreamingAsrEngine, OfflineAsrEngine,
                                                          PunctuationEngine, VadEngine)}
