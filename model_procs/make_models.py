"""Generate FunASR model directories with the real model classes and random, seeded weights.

Model hubs are unreachable here and in CI, so the tests, the demo and the benchmark load models that this
script writes: `config.yaml` + `model.pt` (+ `tokens.json`, `am.mvn`) exactly as funasr's `AutoModel` expects
a local directory, one per model kind (`streaming_asr`, `asr`, `punctuation`). `tiny` loads in a fraction of a
second; `full` has the real shapes of Paraformer-zh-streaming, Paraformer-zh (SeACo) and CT-Punc, so it
reproduces their memory and compute.

Run as `python -m model_procs.make_models --size tiny --out DIR`, or through a `generated:` source, which the
model process resolves (`model_procs.sources`). torch and funasr are imported inside the functions that need
them, so the supervisor may import its names (it sweeps abandoned staging directories) without them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Mapping

# what can be generated: a kind's own model (`generated:<size>`), or a variant of it (`generated:<variant>-<size>`,
# generated as `<kind>-<variant>`): the asr kind's BiCif-Paraformer and SenseVoiceSmall
GENERATED = ("streaming_asr", "asr", "asr-bicif", "asr-sensevoice", "punctuation")
SIZES = ("tiny", "full")
DONE_MARKER = ".complete"

# (vocab, encoder dims, heads, units, encoder blocks, decoder blocks)
ASR_SHAPES = {"tiny": (200, 64, 2, 128, 2, 2), "full": (8404, 512, 4, 2048, 50, 16)}
# SeACo-Paraformer (paraformer-zh): (vocab, dims, heads, units, encoder blocks, decoder blocks, seaco blocks)
OFFLINE_SHAPES = {"tiny": (200, 64, 2, 128, 2, 2, 1), "full": (8404, 512, 4, 2048, 50, 16, 4)}
# SenseVoiceSmall: (vocab, dims, heads, units, blocks, tp blocks); its vocabulary's special tokens sit at fixed ids
SENSEVOICE_SHAPES = {"tiny": (25055, 64, 2, 128, 2, 1), "full": (25055, 512, 4, 2048, 50, 20)}
# (vocab, dims, heads, units, blocks)
PUNC_SHAPES = {"tiny": (300, 32, 2, 64, 1), "full": (272727, 256, 8, 1024, 4)}
PUNC_LIST = ["<unk>", "_", "，", "。", "？", "、"]
LFR_DIM = 560  # 80 mels x 7 stacked frames


def synthetic_vocab(size: int) -> list[str]:
    """`<blank> <s> </s>`, CJK characters (then two-character words once they run out), `<unk>` last."""
    first, count = 0x4E00, 0x9FA5 - 0x4E00
    words = [chr(first + i) for i in range(min(size - 4, count))]
    i = 0
    while len(words) < size - 4:
        words.append(chr(first + i // count) + chr(first + i % count))
        i += 1
    return ["<blank>", "<s>", "</s>", *words, "<unk>"]


def asr_config(size: str) -> dict:
    """Paraformer-zh-streaming's config.yaml, with the shapes of `size`."""
    vocab, dims, heads, units, enc_blocks, dec_blocks = ASR_SHAPES[size]
    return {
        "model": "ParaformerStreaming",
        "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True,
                       "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75},
        "encoder": "SANMEncoderChunkOpt",
        "encoder_conf": {
            "output_size": dims, "attention_heads": heads, "linear_units": units, "num_blocks": enc_blocks,
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
            "input_layer": "pe_online", "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
            "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
            "chunk_size": [12, 15], "stride": [8, 10], "pad_left": [0, 0],
            "encoder_att_look_back_factor": [4, 4], "decoder_att_look_back_factor": [1, 1],
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            "attention_heads": heads, "linear_units": units, "num_blocks": dec_blocks, "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
            "src_attention_dropout_rate": 0.1, "att_layer_num": dec_blocks, "kernel_size": 11, "sanm_shfit": 5,
        },
        "predictor": "CifPredictorV2",
        "predictor_conf": {"idim": dims, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45},
        "frontend": "WavFrontendOnline",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25,
                          "frame_shift": 10, "lfr_m": 7, "lfr_n": 6, "dither": 0.0},
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
        "input_size": LFR_DIM,
        "vocab_size": vocab,
    }


def offline_asr_config(size: str) -> dict:
    """paraformer-zh's config.yaml (SeACo-Paraformer: timestamps from CifPredictorV3, hotwords from its bias
    encoder and decoder), with the shapes of `size`."""
    vocab, dims, heads, units, enc_blocks, dec_blocks, seaco_blocks = OFFLINE_SHAPES[size]
    config = asr_config("tiny")  # the shared parts (frontend options, tokenizer, dropout) as the streaming one
    decoder_conf = {**config["decoder_conf"], "attention_heads": heads, "linear_units": units,
                    "num_blocks": dec_blocks, "att_layer_num": dec_blocks, "sanm_shfit": 0}
    return {
        **config,
        "model": "SeacoParaformer",
        "model_conf": {**config["model_conf"], "inner_dim": dims, "bias_encoder_type": "lstm",
                       "bias_encoder_bid": False, "seaco_lsm_weight": 0.1, "seaco_length_normal": True,
                       "train_decoder": True, "NO_BIAS": vocab - 27},
        "encoder": "SANMEncoder",
        "encoder_conf": {key: value for key, value in config["encoder_conf"].items() if key in SANM_KEYS}
        | {"output_size": dims, "attention_heads": heads, "linear_units": units, "num_blocks": enc_blocks,
           "input_layer": "pe"},
        "decoder_conf": decoder_conf,
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": {**decoder_conf, "linear_units": units // 2, "num_blocks": seaco_blocks,
                               "att_layer_num": seaco_blocks, "kernel_size": 21, "use_output_layer": False,
                               "wo_input_layer": True},
        "predictor": "CifPredictorV3",
        "predictor_conf": {"idim": dims, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45,
                           "smooth_factor2": 0.25, "noise_threshold2": 0.01, "upsample_times": 3,
                           "use_cif1_cnn": False, "upsample_type": "cnn_blstm"},
        "frontend": "WavFrontend",
        "frontend_conf": {key: value for key, value in config["frontend_conf"].items()},
        "vocab_size": vocab,
    }


def bicif_config(size: str) -> dict:
    """BiCif-Paraformer: paraformer-zh without the SeACo hotword parts (timestamps, no hotwords)."""
    config = offline_asr_config(size)
    for key in ("seaco_decoder", "seaco_decoder_conf"):
        del config[key]
    model_conf = {k: v for k, v in config["model_conf"].items() if k in asr_config("tiny")["model_conf"]}
    return {**config, "model": "BiCifParaformer", "model_conf": model_conf}


def sensevoice_config(size: str) -> dict:
    """SenseVoiceSmall (CTC over a SANM encoder, language/emotion/event queries), with the shapes of `size`;
    its tokens are characters here (the real one's sentencepiece model cannot be had offline)."""
    vocab, dims, heads, units, blocks, tp_blocks = SENSEVOICE_SHAPES[size]
    encoder_conf = {k: v for k, v in asr_config("tiny")["encoder_conf"].items() if k in SANM_KEYS}
    return {
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": encoder_conf | {"output_size": dims, "attention_heads": heads, "linear_units": units,
                                        "num_blocks": blocks, "tp_blocks": tp_blocks, "input_layer": "pe"},
        "frontend": "WavFrontend", "frontend_conf": asr_config("tiny")["frontend_conf"],
        "tokenizer": "CharTokenizer", "tokenizer_conf": {"unk_symbol": "<unk>"},
        "input_size": LFR_DIM, "vocab_size": vocab,
    }


SANM_KEYS = ("dropout_rate", "positional_dropout_rate", "attention_dropout_rate", "pos_enc_class",
             "normalize_before", "kernel_size", "sanm_shfit", "selfattention_layer_type")


def punc_config(size: str) -> dict:
    """CT-Punc's config.yaml, with the shapes of `size`."""
    vocab, dims, heads, units, blocks = PUNC_SHAPES[size]
    return {
        "model": "CTTransformer",
        "model_conf": {"ignore_id": 0, "embed_unit": dims, "att_unit": dims, "dropout_rate": 0.1,
                       "punc_list": PUNC_LIST, "punc_weight": [1.0] * len(PUNC_LIST), "sentence_end_id": 3},
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "input_size": dims, "output_size": dims, "attention_heads": heads, "linear_units": units,
            "num_blocks": blocks, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.0, "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True, "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
            "padding_idx": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
        "vocab_size": vocab,
    }


def identity_mvn() -> str:
    """A Kaldi Nnet CMVN that shifts by 0 and scales by 1 (funasr reads `<AddShift>` and `<Rescale>`)."""
    zeros, ones = " ".join(["0"] * LFR_DIM), " ".join(["1"] * LFR_DIM)
    return (f"<Nnet>\n<Splice> {LFR_DIM} {LFR_DIM}\n[ 0 ]\n"
            f"<AddShift> {LFR_DIM} {LFR_DIM}\n<LearnRateCoef> 0 [ {zeros} ]\n"
            f"<Rescale> {LFR_DIM} {LFR_DIM}\n<LearnRateCoef> 0 [ {ones} ]\n</Nnet>\n")


def build_module(config: dict):
    """Instantiate the real model class through funasr's registry, the way AutoModel does."""
    from funasr.register import tables
    import funasr.models  # noqa: F401  (registers the model classes)

    conf = {k: v for k, v in config.items() if k not in ("model_conf",)}
    conf.update(config.get("model_conf", {}))
    return tables.model_classes.get(config["model"])(**conf)


def make_cif_fire(model) -> None:
    """A random CIF predictor may never reach its threshold: make each frame add ~0.27 so chunks yield tokens."""
    import torch

    with torch.no_grad():
        model.predictor.cif_output.weight.mul_(0.01)
        model.predictor.cif_output.bias.fill_(-1.0)


def never_unknown_punctuation(model) -> None:
    """A trained CT-Punc never predicts its `<unk>` class, which funasr would write into the text as "<unk>"
    (and which FunASR's HTML5 page counts as five characters that have no token times): nor does this one."""
    import torch

    with torch.no_grad():
        model.decoder.bias[PUNC_LIST.index("<unk>")] = -1e4


def write_model(model_id: str, size: str, out: Path, seed: int = 0) -> None:
    """Write one complete model directory at `out` (which must not exist yet)."""
    import torch
    import yaml

    torch.manual_seed(seed)
    config = CONFIGS[model_id](size)
    model = build_module(config)
    if hasattr(model, "predictor"):
        make_cif_fire(model)
    if model_id == "punctuation":
        never_unknown_punctuation(model)
    if model_id != "punctuation":
        (out / "am.mvn").write_text(identity_mvn())
    for derived in ("vocab_size", "input_size"):  # AutoModel derives these from the tokenizer and frontend
        config.pop(derived, None)
    (out / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    (out / "tokens.json").write_text(json.dumps(synthetic_vocab(config_vocab(model_id, size)), ensure_ascii=False))
    torch.save(model.state_dict(), out / "model.pt")


CONFIGS = {"streaming_asr": asr_config, "asr": offline_asr_config, "asr-bicif": bicif_config,
           "asr-sensevoice": sensevoice_config, "punctuation": punc_config}
SHAPES: dict[str, Mapping[str, tuple[int, ...]]] = {
    "streaming_asr": ASR_SHAPES, "asr": OFFLINE_SHAPES, "asr-bicif": OFFLINE_SHAPES,
    "asr-sensevoice": SENSEVOICE_SHAPES, "punctuation": PUNC_SHAPES}


def config_vocab(model_id: str, size: str) -> int:
    return SHAPES[model_id][size][0]


def model_dir(root: Path, model_id: str, size: str) -> Path:
    return Path(root) / f"{model_id}-{size}"


def remove_abandoned_staging(root: Path) -> None:
    """A generation killed midway (an unload, SIGKILL) leaves `.<name>-<pid>-<random>`: remove those whose
    process is gone."""
    for staging in root.glob(".*-*-*") if root.is_dir() else []:
        pid = staging.name.rsplit("-", 2)[1]
        if staging.is_dir() and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(staging, ignore_errors=True)


def ensure_model(root: Path, model_id: str, size: str) -> Path:
    """Return the model directory, generating it first if needed; written aside and renamed, so never half there."""
    root = Path(root)
    target = model_dir(root, model_id, size)
    remove_abandoned_staging(root)
    if (target / DONE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-{os.getpid()}-", dir=target.parent))
    try:
        write_model(model_id, size, staging)
        (staging / DONE_MARKER).touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.chmod(0o755)
        os.replace(staging, target)
    except OSError:
        if not (target / DONE_MARKER).exists():  # another process won the race: theirs is as good
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--out", type=Path, required=True, help="directory that receives <model>-<size>/")
    parser.add_argument("--models", nargs="+", choices=GENERATED, default=["streaming_asr", "asr", "punctuation"])
    args = parser.parse_args(argv)
    for model_id in args.models:
        print(ensure_model(args.out, model_id, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
