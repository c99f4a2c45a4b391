"""Paraformer-streaming's encoder and decoder in ONNX Runtime, behind funasr's own `forward_chunk` contract.

funasr's `generate` still runs the frontend, the CIF predictor, the tokenizer and every cache dict; only the two
`forward_chunk` calls that hold ~all of the compute go to ONNX Runtime, with the look-back keys and values and
the decoder's FSMN windows carried in the same dict entries funasr uses (`opt`, `decode_fsmn`), as numpy arrays.
So text is funasr's chunk for chunk wherever the graphs compute what its layers compute.
"""

from __future__ import annotations

import numpy as np
import torch

from model_procs.onnx_graphs import StreamingDecoderGraph, StreamingEncoderGraph


class OnnxStreamingEncoder:
    """Stands in for `encoder.forward_chunk`: embedding and overlap as funasr does them, the layers in ONNX."""

    def __init__(self, encoder, session, graph: StreamingEncoderGraph) -> None:
        self.embed = encoder.embed
        self.overlap = encoder._add_overlap_chunk
        self.scale = encoder.output_size() ** 0.5
        self.session = session
        self.inputs, _ = graph.names()
        self.chunk_size = graph.chunk_size
        self.look_back = graph.look_back
        first = graph.layers[0].self_attn
        self.empty = np.zeros((1, first.h, 0, first.d_k), dtype=np.float32)

    def __call__(self, xs_pad: torch.Tensor, ilens: torch.Tensor, cache: dict, **kwargs):
        check_options(cache, self.chunk_size, self.look_back, "encoder_chunk_look_back")
        xs_pad *= self.scale  # in place, as funasr does: on the tail chunk this scales cache["feats"] itself
        xs_pad = self.embed(xs_pad, cache)
        xs_pad = cache["feats"] if cache["tail_chunk"] else self.overlap(xs_pad, cache)
        previous = cache["opt"] or [self.empty] * (len(self.inputs) - 1)
        feed = {"xs": xs_pad.numpy(), **dict(zip(self.inputs[1:], previous))}
        encoder_out, *next_caches = self.session.run(None, feed)
        if self.look_back > 0:
            cache["opt"] = next_caches
        return torch.from_numpy(encoder_out), ilens, None


class OnnxStreamingDecoder:
    """Stands in for `decoder.forward_chunk`: a layer's first FSMN window is padded on both sides, later ones
    continue the last window, exactly as `MultiHeadedAttentionSANMDecoder` pads and caches."""

    def __init__(self, session, graph: StreamingDecoderGraph) -> None:
        self.session = session
        self.inputs, _ = graph.names()
        self.chunk_size = graph.chunk_size
        self.look_back = graph.look_back
        layers = graph.fsmn_layers()
        dims = [layer.self_attn.fsmn_block.in_channels for layer in layers]
        self.first_before = [np.zeros((1, d, layer.self_attn.pad_fn.padding[0]), np.float32)
                             for d, layer in zip(dims, layers)]
        self.first_after = [np.zeros((1, d, layer.self_attn.pad_fn.padding[1]), np.float32)
                            for d, layer in zip(dims, layers)]
        self.no_after = [np.zeros((1, d, 0), np.float32) for d in dims]
        self.keep = [layer.self_attn.kernel_size - 1 for layer in layers]
        attention = graph.attending[0].src_attn
        self.empty = np.zeros((1, attention.h, 0, attention.d_k), dtype=np.float32)
        self.attending = len(graph.attending)

    def __call__(self, memory: torch.Tensor, tgt: torch.Tensor, cache: dict) -> torch.Tensor:
        check_options(cache, self.chunk_size, self.look_back, "decoder_chunk_look_back")
        windows = cache["decode_fsmn"]
        if windows is None:
            befores, afters = self.first_before, self.first_after
        else:
            befores = [window[:, :, 1:][:, :, -keep:] for window, keep in zip(windows, self.keep)]
            afters = self.no_after
        attention = cache["opt"] or [self.empty] * (2 * self.attending)
        feed = dict(zip(self.inputs, [memory.numpy(), tgt.numpy(), *befores, *afters, *attention]))
        logits, *rest = self.session.run(None, feed)
        cache["decode_fsmn"] = rest[:len(self.keep)]
        if self.look_back > 0:
            cache["opt"] = rest[len(self.keep):]
        return torch.from_numpy(logits)


def check_options(cache: dict, chunk_size: list[int], look_back: int, look_back_key: str) -> None:
    """The graphs fix the chunk shape and look-back they were exported with; another would compute other text."""
    if list(cache["chunk_size"]) != chunk_size or cache[look_back_key] != look_back:
        raise ValueError(f"this ONNX export computes chunk_size {chunk_size} with {look_back_key} {look_back}, "
                         f"not {list(cache['chunk_size'])} with {cache[look_back_key]}")
