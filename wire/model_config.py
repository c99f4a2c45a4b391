"""One model's settings: the [models.<name>] table and the body the repository API registers."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


DEVICE_PATTERN = r"^(cpu|cuda)(:(\d+))?$"   # what a model may run on; whether this machine has it, a load checks


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One model's settings. `source`: a model directory, a hub alias, `generated:tiny|full`, or
    `wheel:<name>==<version>/<folder>#sha256=<hash>` (a folder of a wheel on the package index)."""

    kind: str = ""                   # streaming_asr | asr | punctuation | vad; a seed model's name is its kind
    source: str = ""
    display_name: str = ""           # shown in /model/info; empty: the kind's
    description: str = ""
    language: str = ""
    hotwords: str = ""               # asr: words to bias towards on every request, space-separated
    device: Annotated[str, msgspec.Meta(pattern=DEVICE_PATTERN)] = "cpu"   # cpu, cuda, cuda:<index>
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] | Literal["auto"] = 1    # auto: from the usable cores
    autoload: bool = True            # a request for an unloaded model loads it (cold start)
    keep_alive_s: Annotated[float, msgspec.Meta(ge=-1)] = 300.0   # idle this long -> unloaded; -1 never
    required: bool = False           # reported when not loaded; preloaded first
    preload: bool = False            # load at start-up
    priority: int = 0                # preload order, highest first (after required)
    max_memory_mb: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # kill past this Private_Dirty; 0 = no cap
    min_replicas: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0    # processes kept while loaded (0: scale to zero)
    max_replicas: Annotated[int, msgspec.Meta(ge=1, le=64)] | Literal["auto"] = 1  # the queue may scale to
    max_queue: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 64  # queued requests; past it: OVERLOADED
    scale_up_after_ms: Annotated[float, msgspec.Meta(ge=0)] = 200.0  # oldest queued request waited this long
    max_batch: Annotated[int, msgspec.Meta(ge=0, le=256)] = 0       # requests one process takes at once; 0: kind's
    max_batch_delay_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.0  # hold a short batch this long
    loader: Literal["mapped", "automodel"] = "mapped"  # weights mapped from the file, or copied by AutoModel
    keep_warm: bool = False          # after the last unload, leave the weights' pages in the page cache
    engine: Literal["torch", "onnx"] = "torch"    # onnx: exported once into the cache, run in ONNX Runtime
    quantize: Literal["none", "int8"] = "none"    # onnx: int8 weights (faster, text may differ from torch's)
    nodes: list[str] = []            # a fleet: only these Ray nodes (ids, id prefixes or label key=value)

    @property
    def thread_count(self) -> int:
        """`threads` once the supervisor resolved "auto" (every config it keeps is resolved)."""
        if self.threads == "auto":
            raise ValueError("threads is still 'auto': resolve it with the usable cores first")
        return self.threads

    @property
    def replica_limit(self) -> int:
        """`max_replicas` once resolved, as `thread_count`."""
        if self.max_replicas == "auto":
            raise ValueError("max_replicas is still 'auto': resolve it with the usable cores first")
        return self.max_replicas

