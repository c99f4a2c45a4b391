"""The torch graphs we export to ONNX, one per compute-heavy part of a FunASR model.

funasr keeps streaming state in Python dicts that its layers read and rewrite; ONNX needs it as tensors in and
out. Each streaming graph runs funasr's own submodules in funasr's own order on one chunk, with every cache an
explicit input and its next value an output, so a loop that carries them (`model_procs.onnx_runtime`) gives
what funasr's `forward_chunk` gives. Shapes that vary (frames, tokens, cache lengths) are dynamic axes; an empty
cache (length 0) stands for funasr's "no cache yet", which every concatenation here treats the same way.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import torch


def cache_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}{part}{index}" for index in range(layers) for part in ("_k", "_v")]


class StreamingEncoderGraph(torch.nn.Module):
    """`SANMEncoderChunkOpt.forward_chunk` after its embedding and overlap step: every layer's look-back keys
    and values in, the encoder output and the next keys and values out. Axis 0 is the stream: chunks of several
    streams whose caches have one length run as one call (`onnx_batching`)."""

    def __init__(self, encoder, chunk_size: list[int], look_back: int) -> None:
        super().__init__()
        self.layers: Any = torch.nn.ModuleList([*encoder.encoders0, *encoder.encoders])  # funasr's layers: untyped
        self.after_norm = encoder.after_norm if encoder.normalize_before else None
        self.chunk_size = list(chunk_size)
        self.look_back = look_back

    def forward(self, xs: torch.Tensor, *caches: torch.Tensor):
        next_caches = []
        for index, layer in enumerate(self.layers):
            cache = {"k": caches[2 * index], "v": caches[2 * index + 1]}
            xs, cache = layer.forward_chunk(xs, cache, self.chunk_size, self.look_back)
            next_caches += [cache["k"], cache["v"]]
        if self.after_norm is not None:
            xs = self.after_norm(xs)
        return (xs, *next_caches)

    def names(self) -> tuple[list[str], list[str]]:
        layers = len(self.layers)
        return ["xs", *cache_names("cache", layers)], ["encoder_out", *cache_names("next", layers)]

    def dummy_inputs(self, feats_dim: int) -> tuple[torch.Tensor, ...]:
        first = self.layers[0].self_attn
        heads, d_k = first.h, first.d_k
        cached = self.look_back * self.chunk_size[1]
        return (torch.randn(1, self.chunk_size[1] + self.chunk_size[2], feats_dim),
                *[torch.randn(1, heads, cached, d_k) for _ in range(2 * len(self.layers))])

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        inputs, outputs = self.names()
        axes = {"xs": {0: "streams", 1: "frames"}, "encoder_out": {0: "streams", 1: "frames"}}
        axes.update({name: {0: "streams", 2: "cached"} for name in inputs[1:]})
        axes.update({name: {0: "streams", 2: "next_cached"} for name in outputs[1:]})
        return axes


class StreamingDecoderGraph(torch.nn.Module):
    """`ParaformerSANMDecoder.forward_chunk`: each FSMN layer's window (what precedes this chunk's tokens and the
    zeros that follow them) and each cross-attention layer's look-back keys and values in; logits, the FSMN
    windows and the next keys and values out. funasr pads a layer's first window on both sides and later ones
    with the previous window's tail, so the caller sends the right `before`/`after` for each call."""

    def __init__(self, decoder, chunk_size: list[int], look_back: int) -> None:
        super().__init__()
        self.attending = decoder.decoders
        extra = decoder.num_blocks - decoder.att_layer_num
        self.fsmn_only = decoder.decoders2 if extra > 1 else torch.nn.ModuleList()  # funasr's own condition
        self.final = decoder.decoders3
        self.after_norm = decoder.after_norm if decoder.normalize_before else None
        self.output_layer = decoder.output_layer
        self.chunk_size = list(chunk_size)
        self.look_back = look_back

    def fsmn_layers(self) -> list:
        return [*self.attending, *self.fsmn_only]

    def forward(self, memory: torch.Tensor, tgt: torch.Tensor, *state: torch.Tensor):
        fsmn_count = len(self.fsmn_layers())
        befores, afters = state[:fsmn_count], state[fsmn_count:2 * fsmn_count]
        attention = state[2 * fsmn_count:]
        x = tgt
        windows, next_caches = [], []
        for index, layer in enumerate(self.fsmn_layers()):
            residual = x
            if layer.normalize_before:
                x = layer.norm1(x)
            x = layer.feed_forward(x)
            if layer.normalize_before:
                x = layer.norm2(x)
            fsmn_out, window = fsmn_step(layer.self_attn, x, befores[index], afters[index])
            windows.append(window)
            x = residual + fsmn_out
            if layer.src_attn is not None:
                residual = x
                if layer.normalize_before:
                    x = layer.norm3(x)
                cache = {"k": attention[2 * index], "v": attention[2 * index + 1]}
                attended, cache = layer.src_attn.forward_chunk(x, memory, cache, self.chunk_size, self.look_back)
                next_caches += [cache["k"], cache["v"]]
                x = residual + attended
        for layer in self.final:
            x, memory, _, _ = layer.forward_chunk(x, memory)
        if self.after_norm is not None:
            x = self.after_norm(x)
        if self.output_layer is not None:
            x = self.output_layer(x)
        return (x, *windows, *next_caches)

    def names(self) -> tuple[list[str], list[str]]:
        fsmn = len(self.fsmn_layers())
        attending = len(self.attending)
        inputs = ["memory", "tgt", *[f"before{i}" for i in range(fsmn)], *[f"after{i}" for i in range(fsmn)],
                  *cache_names("cache", attending)]
        return inputs, ["logits", *[f"window{i}" for i in range(fsmn)], *cache_names("next", attending)]

    def dummy_inputs(self, memory_dim: int) -> tuple[torch.Tensor, ...]:
        fsmn = self.fsmn_layers()
        attention = self.attending[0].src_attn
        tokens, frames = 3, self.chunk_size[1] + self.chunk_size[2]
        return (torch.randn(1, frames, memory_dim), torch.randn(1, tokens, memory_dim),
                *[torch.randn(1, memory_dim, layer.self_attn.pad_fn.padding[0]) for layer in fsmn],
                *[torch.randn(1, memory_dim, layer.self_attn.pad_fn.padding[1]) for layer in fsmn],
                *[torch.randn(1, attention.h, self.look_back * self.chunk_size[1], attention.d_k)
                  for _ in range(2 * len(self.attending))])

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        inputs, outputs = self.names()
        axes = {"memory": {0: "streams", 1: "frames"}, "tgt": {0: "streams", 1: "tokens"},
                "logits": {0: "streams", 1: "tokens"}}
        axes.update({name: {0: "streams", 2: f"{name}_len"} for name in inputs[2:]})
        axes.update({name: {0: "streams", 2: f"{name}_len"} for name in outputs[1:]})
        return axes


def fsmn_step(fsmn, inputs: torch.Tensor, before: torch.Tensor, after: torch.Tensor):
    """`MultiHeadedAttentionSANMDecoder.forward` with its padding or cache given as `before`/`after`: the FSMN
    output and the window it convolved (the next call's cache)."""
    window = torch.cat((before, inputs.transpose(1, 2), after), dim=2)
    return fsmn.fsmn_block(window).transpose(1, 2) + inputs, window


class WholeForward(torch.nn.Module):
    """A stateless funasr submodule's `forward` (an offline encoder: features and lengths in), keeping the
    first `len(output_names)` tensor outputs."""

    def __init__(self, module, input_names: list[str], output_names: list[str],
                 dynamic_axes: dict[str, dict[int, str]]) -> None:
        super().__init__()
        self.module = module
        self.input_names, self.output_names, self.axes = input_names, output_names, dynamic_axes

    def forward(self, *inputs: torch.Tensor):
        result = self.module(*inputs)
        result = result if isinstance(result, tuple) else (result,)
        return result[:len(self.output_names)]

    def names(self) -> tuple[list[str], list[str]]:
        return self.input_names, self.output_names

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return self.axes


class PunctuationGraph(WholeForward):
    """`CTTransformer.punc_forward`: token ids and their count in, punctuation logits out."""

    def __init__(self, model) -> None:
        super().__init__(model, ["text", "text_lengths"], ["logits"], {"text": {0: "texts", 1: "tokens"},
                                                                         "text_lengths": {0: "texts"},
                                                                         "logits": {0: "texts", 1: "tokens"}})

    def forward(self, *inputs: torch.Tensor):
        text, text_lengths = inputs
        return self.module.punc_forward(text, text_lengths)[0]


class VadGraph(torch.nn.Module):
    """FSMN-VAD's `FSMN.forward` in streaming form: features and every FSMN layer's left context in, speech
    scores and the next left contexts out (funasr keeps them as `cache_layer_<i>`)."""

    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.layers = [block.stack_layer for block in encoder.fsmn]

    def forward(self, feats: torch.Tensor, *contexts: torch.Tensor):
        cache = {f"cache_layer_{layer}": context for layer, context in zip(self.layers, contexts)}
        scores = self.encoder(feats, cache)
        return (scores, *[cache[f"cache_layer_{layer}"] for layer in self.layers])

    def names(self) -> tuple[list[str], list[str]]:
        return (["feats", *[f"context{i}" for i in self.layers]],
                ["scores", *[f"next_context{i}" for i in self.layers]])

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"feats": {1: "frames"}, "scores": {1: "frames"}}

    def initial_contexts(self) -> list[torch.Tensor]:
        """What funasr starts each layer's context as: zeros, `(lorder - 1) * lstride` frames long."""
        return [torch.zeros(1, block.fsmn_block.dim,
                            (block.fsmn_block.lorder - 1) * block.fsmn_block.lstride, 1)
                for block in self.encoder.fsmn]


@contextlib.contextmanager
def traceable_pad_masks() -> Iterator[None]:
    """funasr's `make_pad_mask` takes the longest length as a Python int, which tracing would freeze into the
    graph; within the block, the modules that imported it get one computed from the lengths tensor."""
    from funasr.models.transformer.utils import nets_utils

    original = nets_utils.make_pad_mask

    def pad_mask(lengths, xs=None, length_dim=-1, maxlen=None):
        if xs is not None or maxlen is not None or length_dim != -1:
            raise NotImplementedError("make_pad_mask with xs, maxlen or length_dim is not exported")
        return torch.arange(lengths.max(), device=lengths.device)[None, :] >= lengths[:, None]

    users = [module for name, module in list(sys.modules.items())
             if name.startswith("funasr.") and getattr(module, "make_pad_mask", None) is original]
    for module in users:
        setattr(module, "make_pad_mask", pad_mask)
    try:
        yield
    finally:
        for module in users:
            setattr(module, "make_pad_mask", original)
