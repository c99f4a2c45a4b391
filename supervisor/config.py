"""Server configuration: a TOML file decoded by msgspec into typed Structs; unknown keys fail at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import msgspec

from supervisor.catalog import CATALOG

DEMO = "demo"
DEFAULT_CACHE_DIR = Path(os.environ.get("FUNASR_SUPERVISOR_CACHE", Path.home() / ".cache" / "funasr-supervisor"))


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One model's settings. `source`: a model directory, a hub alias, or `generated:tiny|full`."""

    source: str = ""
    device: str = "cpu"
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1


class ConfigFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    models: dict[str, ModelConfig] = {}


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def with_defaults(models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
    """Every catalog model gets a config; an empty source means the model's hub alias."""
    unknown = sorted(set(models) - set(CATALOG))
    if unknown:
        raise ConfigError(f"unknown model(s) in [models]: {', '.join(unknown)}; known: {', '.join(CATALOG)}")
    result = {}
    for model_id, entry in CATALOG.items():
        config = models.get(model_id, ModelConfig())
        if not config.source:
            config = msgspec.structs.replace(config, source=entry.hub_alias)
        result[model_id] = config
    return result


def load_config(spec: str | None) -> dict[str, ModelConfig]:
    """`None` → the real FunASR models by hub alias; `demo` → generated tiny models; else a TOML path."""
    if spec is None:
        return with_defaults({})
    if spec == DEMO:
        return with_defaults({model_id: ModelConfig(source="generated:tiny") for model_id in CATALOG})
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        parsed = msgspec.toml.decode(data, type=ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config {path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    return with_defaults(dict(parsed.models))
