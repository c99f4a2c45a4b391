"""Per model class: which parts go to ONNX Runtime, and how the sessions take their place (onnx_engine).

Each plan names its graphs with the inputs they are traced on (`dummy`) and inputs of other lengths (`probe`)
that the export must answer as torch does before it is used, and then installs the sessions where funasr calls
those parts, dropping the torch modules they replace.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from model_procs.onnx_graphs import (PunctuationGraph, StreamingDecoderGraph, StreamingEncoderGraph, VadGraph,
                                     WholeForward)
from model_procs.onnx_streaming import OnnxStreamingDecoder, OnnxStreamingEncoder

# what engines.StreamingAsrEngine asks funasr for: the streaming graphs are exported for exactly this
STREAM_CHUNK = [0, 10, 5]
ENCODER_LOOK_BACK = 4
DECODER_LOOK_BACK = 1


class Part(NamedTuple):
    graph: Any               # a torch Module with names() and dynamic_axes() as well as forward
    dummy: tuple             # traced with these
    probe: tuple             # other lengths: ONNX Runtime must answer them as torch does


class Plan:
    def __init__(self, model, kwargs: dict) -> None:
        self.model = model
        self.kwargs = kwargs

    def parts(self) -> dict[str, Part]:
        raise NotImplementedError

    def install(self, sessions: dict) -> None:
        raise NotImplementedError

    def feats_dim(self) -> int:
        conf = self.kwargs["frontend_conf"]
        return conf["n_mels"] * conf.get("lfr_m", 1)


class StreamingParaformerPlan(Plan):
    """ParaformerStreaming: the chunk encoder and the chunk decoder, every cache carried explicitly."""

    def parts(self) -> dict[str, Part]:
        encoder = StreamingEncoderGraph(self.model.encoder, STREAM_CHUNK, ENCODER_LOOK_BACK)
        decoder = StreamingDecoderGraph(self.model.decoder, STREAM_CHUNK, DECODER_LOOK_BACK)
        dim = self.model.encoder.output_size()
        first, later = encoder.dummy_inputs(self.feats_dim()), decoder.dummy_inputs(dim)
        attention = decoder.attending[0].src_attn
        fsmn = decoder.fsmn_layers()
        decoder_probe = (torch.randn(1, 15, dim), torch.randn(1, 5, dim),
                         *[torch.randn(1, dim, layer.self_attn.kernel_size - 1) for layer in fsmn],
                         *[torch.zeros(1, dim, 0) for _ in fsmn],
                         *[torch.randn(1, attention.h, 10, attention.d_k) for _ in range(2 * len(decoder.attending))])
        encoder_probe = (first[0], *[torch.zeros(*tensor.shape[:2], 0, tensor.shape[3]) for tensor in first[1:]])
        return {"encoder": Part(encoder, first, encoder_probe), "decoder": Part(decoder, later, decoder_probe)}

    def install(self, sessions: dict) -> None:
        parts = self.parts()
        encoder, decoder = self.model.encoder, self.model.decoder
        encoder.forward_chunk = OnnxStreamingEncoder(encoder, sessions["encoder"], parts["encoder"].graph)
        decoder.forward_chunk = OnnxStreamingDecoder(sessions["decoder"], parts["decoder"].graph)
        encoder.encoders0, encoder.encoders = torch.nn.ModuleList(), torch.nn.ModuleList()
        decoder.decoders = decoder.decoders2 = decoder.decoders3 = None
        decoder.output_layer = None


class OfflineEncoderPlan(Plan):
    """Offline Paraformer (plain, SeACo, BiCif) and SenseVoiceSmall: the encoder, ~3/4 of their compute. Their
    decoders are called in several shapes (hidden states for SeACo's biasing, timestamps for BiCif) and stay
    in torch."""

    def parts(self) -> dict[str, Part]:
        graph = WholeForward(self.model.encoder, ["speech", "speech_lengths"], ["encoder_out", "encoder_out_lens"],
                             {"speech": {1: "frames"}, "encoder_out": {1: "encoded"}})
        dim = self.feats_dim()
        return {"encoder": Part(graph, (torch.randn(1, 40, dim), torch.tensor([40])),
                                (torch.randn(1, 23, dim), torch.tensor([23])))}

    def install(self, sessions: dict) -> None:
        arity = len(self.model.encoder(torch.zeros(1, 8, self.feats_dim()), torch.tensor([8])))
        self.model.encoder = OnnxEncoder(sessions["encoder"], self.model.encoder.output_size(), arity)


class OnnxModule(torch.nn.Module):
    """A session in place of a torch module. funasr reads the model's device from its first parameter, so one
    without any weights left still holds an empty one."""

    def __init__(self, session, output_size: int) -> None:
        super().__init__()
        self.session, self.size = session, output_size
        self.device_marker = torch.nn.Parameter(torch.empty(0), requires_grad=False)

    def output_size(self) -> int:
        return self.size


class OnnxEncoder(OnnxModule):
    """In place of an offline encoder module: features and lengths in, what the torch encoder returned out."""

    def __init__(self, session, output_size: int, arity: int) -> None:
        super().__init__(session, output_size)
        self.arity = arity

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, *args, **kwargs):
        encoder_out, lengths = self.session.run(None, {"speech": speech.numpy(),
                                                       "speech_lengths": speech_lengths.to(torch.int64).numpy()})
        return (torch.from_numpy(encoder_out), torch.from_numpy(lengths), *[None] * (self.arity - 2))


class PunctuationPlan(Plan):
    """CT-Transformer: `punc_forward` whole (embedding, SANM encoder, classifier)."""

    def parts(self) -> dict[str, Part]:
        graph = PunctuationGraph(self.model)
        vocab = self.model.embed.num_embeddings

        def ids(count: int) -> tuple:
            return torch.randint(0, vocab, (1, count)), torch.tensor([count], dtype=torch.int32)

        return {"punctuation": Part(graph, ids(20), ids(7))}

    def install(self, sessions: dict) -> None:
        session = sessions["punctuation"]

        def punc_forward(text: torch.Tensor, text_lengths: torch.Tensor, **kwargs):
            feed = {"text": text.to(torch.int64).numpy(), "text_lengths": text_lengths.to(torch.int32).numpy()}
            return torch.from_numpy(session.run(None, feed)[0]), None

        self.model.punc_forward = punc_forward
        self.model.encoder = self.model.embed = None  # the classifier (`decoder`, a few KB) stays: funasr needs
                                                      # a parameter to read the device from


class VadPlan(Plan):
    """FSMN-VAD: the FSMN, its per-layer left contexts carried in funasr's own `cache_layer_<i>` entries."""

    def parts(self) -> dict[str, Part]:
        graph = VadGraph(self.model.encoder)
        contexts = graph.initial_contexts()
        dim = self.feats_dim()
        return {"vad": Part(graph, (torch.randn(1, 30, dim), *contexts),
                            (torch.randn(1, 11, dim), *[torch.randn(*c.shape) for c in contexts]))}

    def install(self, sessions: dict) -> None:
        graph = self.parts()["vad"].graph
        self.model.encoder = OnnxVadEncoder(sessions["vad"], graph, self.model.encoder.output_size())


class OnnxVadEncoder(OnnxModule):
    """In place of `FSMN`: `(feats, cache)` in, scores out, each layer's context kept in `cache` as funasr does."""

    def __init__(self, session, graph: VadGraph, output_size: int) -> None:
        super().__init__(session, output_size)
        self.keys = [f"cache_layer_{layer}" for layer in graph.layers]
        self.inputs, _ = graph.names()
        self.initial = [context.numpy() for context in graph.initial_contexts()]

    def forward(self, feats: torch.Tensor, cache: dict) -> torch.Tensor:
        contexts = [cache[key] if key in cache else initial for key, initial in zip(self.keys, self.initial)]
        feed = dict(zip(self.inputs, [feats.numpy(), *[np.asarray(context) for context in contexts]]))
        scores, *next_contexts = self.session.run(None, feed)
        cache.update(zip(self.keys, next_contexts))
        return torch.from_numpy(scores)


PLANS: dict[str, type[Plan]] = {
    "ParaformerStreaming": StreamingParaformerPlan,
    "Paraformer": OfflineEncoderPlan,
    "SeacoParaformer": OfflineEncoderPlan,
    "BiCifParaformer": OfflineEncoderPlan,
    "SenseVoiceSmall": OfflineEncoderPlan,
    "CTTransformer": PunctuationPlan,
    "FsmnVADStreaming": VadPlan,
}
