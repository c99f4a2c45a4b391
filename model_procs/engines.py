"""FunASR engines: one class per model kind, each on funasr's `AutoModel` (DESIGN.md §4)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 9600          # 600 ms, the streaming Paraformer's chunk_size [0, 10, 5]
STREAM_OPTIONS = {"chunk_size": [0, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}
WARMUP_TEXT = "今天天气很好我们一起去公园散步吧"


class Engine(Protocol):
    def warm_up(self) -> None: ...


def load_automodel(model_dir: str, device: str, threads: int):
    """The one way we build a model: absolute directory, no update check (it calls PyPI with no timeout)."""
    from funasr import AutoModel

    return AutoModel(model=model_dir, disable_update=True, device=device, ncpu=threads,
                     disable_pbar=True, disable_log=True, log_level="WARNING")


class PunctuationEngine:
    """CT-Punc: stateless, one text in, one punctuated text out."""

    def __init__(self, model) -> None:
        self.model = model

    def punctuate(self, text: str) -> str:
        result = self.model.generate(input=text, disable_pbar=True)
        return result[0]["text"] if result else ""

    def warm_up(self) -> None:
        self.punctuate(WARMUP_TEXT)


class StreamingAsrEngine:
    """Paraformer-zh-streaming: the model's cache dict lives here, one per stream, never crosses the wire."""

    def __init__(self, model) -> None:
        self.model = model
        self.caches: dict[str, dict] = {}

    def feed(self, stream_id: str, samples: np.ndarray, is_final: bool) -> str:
        cache = self.caches.setdefault(stream_id, {})
        result = self.model.generate(input=samples, cache=cache, is_final=is_final, disable_pbar=True,
                                     **STREAM_OPTIONS)
        if is_final:
            self.caches.pop(stream_id, None)
        return "".join(item.get("text", "") for item in result)

    def warm_up(self) -> None:
        self.feed("__warmup__", np.zeros(CHUNK_SAMPLES, dtype=np.float32), is_final=True)


ENGINES = {"streaming_asr": StreamingAsrEngine, "punctuation": PunctuationEngine}


def build_engine(model_id: str, model_dir: str, device: str, threads: int) -> Engine:
    return ENGINES[model_id](load_automodel(model_dir, device, threads))
