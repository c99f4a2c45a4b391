"""Skip the random initialisation that a checkpoint overwrites anyway (≈1.1 s of a 3.5 s full streaming load).

funasr builds every layer with torch's random init, then copies the checkpoint over it. While the model is
built, `torch.nn.init`'s in-place initialisers are made no-ops (the same technique as transformers'
`no_init_weights`); afterwards the checkpoint is checked to cover every parameter and buffer with the right
shape. If it does not (funasr keeps a missing key's init value with only a printed warning), the model is
built again the ordinary way, so the result is always what plain `AutoModel` gives.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def skipped_weight_init() -> Iterator[None]:
    """Within the block, torch.nn.init.*_ return their tensor untouched. Only for single-threaded loading."""
    import torch.nn.init as init

    names = [name for name in dir(init) if name.endswith("_") and not name.startswith("_")]
    originals = {name: getattr(init, name) for name in names}
    for name in names:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(init, name, original)


def checkpoint_covers(module, checkpoint_path: str) -> bool:
    """Every entry of the module's state_dict has a same-shaped tensor in the checkpoint (read by mmap)."""
    import torch

    saved = torch.load(checkpoint_path, map_location="cpu", mmap=True, weights_only=True)
    for wrapper in ("state_dict", "model_state_dict", "model"):
        saved = saved.get(wrapper, saved) if isinstance(saved, dict) else saved
    shapes = {key.removeprefix("module."): tuple(value.shape) for key, value in saved.items()}
    return all(shapes.get(key) == tuple(value.shape) for key, value in module.state_dict().items())


def build_without_random_init(build: Callable[[], Any]) -> Any:
    """`build()` returns an AutoModel; use the fast build when its checkpoint covers the whole model."""
    with skipped_weight_init():
        model = build()
    checkpoint = model.kwargs.get("init_param")
    if checkpoint and checkpoint_covers(model.model, checkpoint):
        return model
    log.warning("checkpoint %s does not cover every parameter: building with random init", checkpoint)
    return build()
