"""Build a FunASR model whose weights are the checkpoint file's pages, mapped read-only.

funasr's `AutoModel` still builds the tokenizer and frontend and owns `generate`, so inference is its own code;
only two steps change while it builds: the model class is constructed with its parameters on the `meta` device
(nothing allocated, no random init), and instead of copying the checkpoint over them, the tensors of
`torch.load(mmap=True)` are assigned as the parameters. Those are clean file-backed pages: every replica that
maps the same file shares them through the page cache, and the kernel can reclaim them after an unload.

Buffers are built on the CPU as usual (non-persistent ones are computed there, persistent ones are then replaced
from the checkpoint), so nothing but parameters ever sits on `meta`. Whatever this path cannot prove equal to
funasr's own load (a missing key, another shape or dtype, a key mapping, a tensor left on `meta`) raises
`NotMappable`, and the caller builds the model the ordinary way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from model_procs.fast_init import skipped_weight_init

CHECKPOINT_WRAPPERS = ("state_dict", "model_state_dict", "model")  # unwrapped in this order, as funasr does
DATA_PARALLEL_PREFIX = "module."
UNSUPPORTED_OPTIONS = ("scope_map", "excludes", "fp16", "bf16")    # key mappings and casts funasr would apply


class NotMappable(Exception):
    """The fast path cannot prove it gives what `AutoModel` gives; the message says why."""


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within the block, every registered parameter moves to `meta` (its CPU storage, never initialised since
    init is skipped, is freed at once); buffers stay on the CPU. Only for single-threaded loading."""
    import torch

    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            placed = module._parameters[name]
            module._parameters[name] = type(placed)(placed.to("meta"), requires_grad=placed.requires_grad)

    setattr(torch.nn.Module, "register_parameter", register_on_meta)
    try:
        with skipped_weight_init():
            yield
    finally:
        setattr(torch.nn.Module, "register_parameter", register)


def map_checkpoint(path: str, cache_dir: str) -> tuple[dict, str]:
    """(state dict of mapped tensors, the file they map). A checkpoint that cannot be mapped as it is (legacy
    format, wrapped in a dict, `module.`-prefixed keys) is converted once into the cache, keyed by its content
    hash, and that copy is mapped."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:  # written without the zip format: mmap cannot read it
        state = None
    if state is not None and is_plain_state_dict(state):
        return state, path
    converted = converted_path(path, cache_dir)
    if not converted.exists():
        write_plain_copy(state if state is not None else torch.load(path, map_location="cpu", weights_only=True),
                         converted)
    return torch.load(converted, map_location="cpu", mmap=True, weights_only=True), str(converted)


def is_plain_state_dict(state) -> bool:
    import torch

    return isinstance(state, dict) and all(isinstance(value, torch.Tensor) and not key.startswith(
        DATA_PARALLEL_PREFIX) for key, value in state.items())


def plain_state_dict(state) -> dict:
    """The tensors funasr would read: unwrapped as its loader does, `module.`-prefixed keys winning (its
    scope_map tries `module.<key>` before `<key>`)."""
    for wrapper in CHECKPOINT_WRAPPERS:
        if isinstance(state, dict) and wrapper in state:
            state = state[wrapper]
    if not isinstance(state, dict):
        raise NotMappable(f"the checkpoint holds a {type(state).__name__}, not a state dict")
    plain = {key: value for key, value in state.items() if not key.startswith(DATA_PARALLEL_PREFIX)}
    plain.update({key.removeprefix(DATA_PARALLEL_PREFIX): value for key, value in state.items()
                  if key.startswith(DATA_PARALLEL_PREFIX)})
    return plain


def write_plain_copy(state, target: Path) -> None:
    """Save the plain state dict in torch's zip format (each tensor's data aligned, so mmap can read it)."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.contiguous().clone() for key, value in plain_state_dict(state).items()
               if isinstance(value, torch.Tensor)}
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    os.close(fd)
    try:
        torch.save(tensors, staging)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def converted_path(path: str, cache_dir: str) -> Path:
    """`<cache>/mapped/<sha256 of the source>.pt`."""
    return Path(cache_dir) / "mapped" / f"{content_hash(path, cache_dir)}.pt"


def content_hash(path: str, cache_dir: str) -> str:
    """The sha256 of a file, remembered per (file, size, mtime) so a load does not read a large checkpoint
    twice (the mapped copies and the ONNX exports are both keyed by it)."""
    folder = Path(cache_dir) / "mapped"
    source = Path(path).resolve()
    stat = source.stat()
    identity = f"{source}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = folder / "hashes.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if identity not in index:
        digest = hashlib.sha256()
        with open(source, "rb") as checkpoint:
            while block := checkpoint.read(1 << 20):
                digest.update(block)
        index[identity] = digest.hexdigest()
        folder.mkdir(parents=True, exist_ok=True)
        staging = index_path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(index, indent=1))
        os.replace(staging, index_path)
    return index[identity]


def assign_mapped(model, state: dict, checkpoint: str) -> None:
    """Make the mapped tensors the model's parameters and persistent buffers, after checking they are exactly
    what funasr's strict copy would have put there."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise NotMappable(f"{checkpoint} lacks {len(missing)} of the model's tensors (first: {missing[0]})")
    for key, tensor in expected.items():
        saved = state[key]
        if saved.shape != tensor.shape or saved.dtype != tensor.dtype:
            raise NotMappable(f"{key} is {tuple(saved.shape)} {saved.dtype} in {checkpoint}, the model has "
                              f"{tuple(tensor.shape)} {tensor.dtype}")
    model.load_state_dict({key: state[key] for key in expected}, strict=True, assign=True)
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise NotMappable(f"{len(left)} tensors were left on the meta device (first: {left[0]})")
    on_loaded = getattr(model, "on_pretrained_model_loaded", None)
    if callable(on_loaded):
        on_loaded(frozenset(expected))


def mapped_automodel(model_dir: str, device: str, threads: int, cache_dir: str):
    """`AutoModel` on `model_dir`, with its model's weights mapped from the checkpoint. Raises NotMappable."""
    import funasr.auto.auto_model as auto_model
    import yaml
    from funasr import AutoModel
    from funasr.register import tables

    config = yaml.safe_load((Path(model_dir) / "config.yaml").read_text()) or {}
    unsupported = [option for option in UNSUPPORTED_OPTIONS if config.get(option)]
    if unsupported:
        raise NotMappable(f"config.yaml sets {', '.join(unsupported)}")
    name = config.get("model")
    model_class = tables.model_classes.get(name)
    if model_class is None:
        raise NotMappable(f"model class {name!r} is not registered")
    mapped = {}

    def build_mapped(**conf):
        checkpoint = conf.get("init_param")
        if not checkpoint or not os.path.exists(checkpoint):
            raise NotMappable(f"no checkpoint file to map ({checkpoint!r})")
        with parameters_on_meta():
            model = model_class(**conf)
        state, mapped["file"] = map_checkpoint(checkpoint, cache_dir)
        assign_mapped(model, state, mapped["file"])
        return model

    copy_checkpoint = auto_model.load_pretrained_model
    tables.model_classes[name] = build_mapped
    auto_model.load_pretrained_model = lambda **kwargs: None  # done by build_mapped, without a copy
    try:
        model = AutoModel(model=model_dir, disable_update=True, device=device, ncpu=threads, disable_pbar=True,
                          disable_log=True, log_level="WARNING")
    finally:
        tables.model_classes[name] = model_class
        auto_model.load_pretrained_model = copy_checkpoint
    if "file" not in mapped:
        raise NotMappable("AutoModel did not build the model through its registry")
    return model, mapped["file"]
