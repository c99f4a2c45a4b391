"""Offline FunASR ASR on whole recordings or VAD segments, one at a time or batched (see `OfflineAsrEngine`)."""

from __future__ import annotations

import logging
import re
from typing import Callable

import numpy as np

from model_procs.heard import Feed, Heard, Outcome, StreamEngine, attempt
from wire.audio import SAMPLE_RATE

log = logging.getLogger(__name__)


class OfflineAsrEngine(StreamEngine):
    """Offline FunASR ASR on a whole recording or VAD segment: Paraformer (SeACo-Paraformer with hotwords,
    BiCif-Paraformer) answers text with each token's times; SenseVoiceSmall answers text with its language,
    emotion and event tags. Pieces of one recording are buffered until its end: the model needs all of it.
Recordings that end in one batch go to funasr's batched `generate` together (Paraformer, SeACo without
hotwords and BiCif: padded, masked, and the timestamp head run per recording), answering what each alone
answers; SenseVoice, hotwords and an ONNX encoder of batch 1 take one recording per call."""

    BATCHED = ("Paraformer", "SeacoParaformer", "BiCifParaformer")

    MIN_SAMPLES = 1600  # 100 ms: shorter has no feature frame to recognise

    def __init__(self, model, runtime: str = "torch") -> None:
        self.model = model
        self.pending: dict[str, list[np.ndarray]] = {}
        self.sensevoice = type(getattr(model, "model", None)).__name__ == "SenseVoiceSmall"
        # an ONNX encoder is exported for one recording: a batch's recordings then run one after another
        self.batches = runtime == "torch" and type(getattr(model, "model", None)).__name__ in self.BATCHED
        if self.batches:
            network = model.model
            network.encode = zeroed_past_lengths(network.encode)
            if hasattr(network, "calc_predictor_timestamp"):
                network.calc_predictor_timestamp = one_by_one(network.calc_predictor_timestamp)

    def feed(self, stream_id: str, samples: np.ndarray, is_final: bool, hotwords: str = "") -> Heard:
        audio = self._ended(Feed(stream_id, samples, is_final))
        return self.transcribe(audio, hotwords) if audio is not None and len(audio) >= self.MIN_SAMPLES else Heard()

    def feed_many(self, feeds: list[Feed]) -> list[Outcome]:
        """Buffer every piece; the recordings that end here are transcribed in one batched call."""
        ending = [(i, self._ended(feed)) for i, feed in enumerate(feeds)]
        whole = [(i, audio) for i, audio in ending if audio is not None and len(audio) >= self.MIN_SAMPLES]
        outcomes: list[Outcome] = [Heard()] * len(feeds)
        if len(whole) > 1 and self.batches and not feeds[0].hotwords:
            try:
                heard = self.transcribe_many([audio for _, audio in whole])
                for (i, _), one in zip(whole, heard):
                    outcomes[i] = one
                return outcomes
            except Exception:  # noqa: BLE001 (each recording is tried alone below, so only a bad one fails)
                log.exception("a batch of %d recordings failed; transcribing them one at a time", len(whole))
        for i, audio in whole:
            outcomes[i] = attempt(self.transcribe, audio, feeds[i].hotwords)
        return outcomes

    def _ended(self, feed: Feed) -> np.ndarray | None:
        self.pending.setdefault(feed.stream_id, []).append(feed.samples)
        return np.concatenate(self.pending.pop(feed.stream_id)) if feed.is_final else None

    def transcribe(self, audio: np.ndarray, hotwords: str = "") -> Heard:
        options = {"language": "auto", "use_itn": False} if self.sensevoice else {}
        if hotwords and not self.sensevoice:
            options["hotword"] = hotwords
        result = self.model.generate(input=audio, disable_pbar=True, **options)
        if not result:
            return Heard()
        if self.sensevoice:
            text, tags = sensevoice_tags(result[0].get("text", ""))
            return Heard(text=text, partial_text=text, tags=tags)
        return self._heard(result[0], audio)

    def transcribe_many(self, audios: list[np.ndarray]) -> list[Heard]:
        """Several recordings in one padded forward (funasr's `batch_size`)."""
        results = self.model.generate(input=audios, batch_size=len(audios), disable_pbar=True)
        if len(results) != len(audios):  # funasr answers [] when no recording of the batch has a token
            return [Heard()] * len(audios)
        return [self._heard(result, audio) for result, audio in zip(results, audios)]

    @staticmethod
    def _heard(result: dict, audio: np.ndarray) -> Heard:
        words = result.get("text", "").split()
        stamps = result.get("timestamp") or []
        heard_ms = len(audio) * 1000 // SAMPLE_RATE  # the last frame's padding can reach past the audio's end
        timed = tuple((w, min(int(s), heard_ms), min(int(e), heard_ms)) for w, (s, e) in zip(words, stamps)) \
            if len(stamps) == len(words) else ()
        text = joined(words)
        return Heard(text=text, partial_text=text, words=timed)

    def drop(self, stream_id: str) -> None:
        self.pending.pop(stream_id, None)

    def warm_up(self) -> None:
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))


def zeroed_past_lengths(encode: Callable) -> Callable:
    """Paraformer's CIF predictor convolves one frame past a recording's end: alone, that frame is the conv's zero
    padding; in a padded batch it is the encoder's output on another recording's padding. Zeroing the encoder's
    output past each length makes a batch compute what each recording alone computes (alone it changes nothing)."""
    import torch

    def encode_masked(speech, speech_lengths, **kwargs):
        encoder_out, lengths = encode(speech, speech_lengths, **kwargs)
        if isinstance(encoder_out, torch.Tensor) and encoder_out.shape[0] > 1:
            frames = torch.arange(encoder_out.shape[1], device=encoder_out.device)
            encoder_out = encoder_out * (frames[None, :] < lengths[:, None]).unsqueeze(-1).to(encoder_out.dtype)
        return encoder_out, lengths

    return encode_masked


def one_by_one(calc_predictor_timestamp: Callable) -> Callable:
    """BiCif's timestamp head (SeACo's too) runs a bidirectional LSTM over the upsampled frames, whose backward
    pass would start in a batch's padding: in a batch it runs on each recording's own frames, as alone (it is
    a small part of the work), and its outputs are padded back into the batch's shape."""
    import torch

    def each(encoder_out, encoder_out_lens, token_num):
        if encoder_out.shape[0] == 1:
            return calc_predictor_timestamp(encoder_out, encoder_out_lens, token_num)
        alone = [calc_predictor_timestamp(encoder_out[i:i + 1, :length], encoder_out_lens[i:i + 1],
                                          token_num[i:i + 1]) for i, length in enumerate(encoder_out_lens.tolist())]
        padded = []
        for outputs in zip(*alone):
            width = max(output.shape[1] for output in outputs)
            padded.append(torch.cat([torch.nn.functional.pad(output, (0, width - output.shape[1]))
                                     for output in outputs]))
        return tuple(padded)

    return each


SENSEVOICE_TAG = re.compile(r"<\|([^|<>]*)\|>")
TAG_NAMES = ("language", "emotion", "event")


def sensevoice_tags(text: str) -> tuple[str, dict[str, str]]:
    """SenseVoice's `<|zh|><|NEUTRAL|><|Speech|><|woitn|>text`: the bare text, and its language, emotion and event
    (the fourth tag, inverse text normalisation on or off, says nothing about the speech)."""
    leading = re.match(r"(?:<\|[^|<>]*\|>)+", text)
    tags = SENSEVOICE_TAG.findall(leading.group(0)) if leading else []
    return SENSEVOICE_TAG.sub("", text).strip(), dict(zip(TAG_NAMES, tags))


def joined(words: list[str]) -> str:
    """FunASR's words (space-separated) as text: CJK characters run together, Latin words keep a space."""
    text = ""
    for word in words:
        if text and word.isascii() and text[-1].isascii():
            text += " "
        text += word
    return text
