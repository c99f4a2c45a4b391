"""Models registered at run time (Triton's repository `load` with a config), kept across restarts.

The file is `<cache>/registry.json`: each registered model's name and its settings as given. It is written aside
and renamed, so a crash leaves the old file or the new one, never half of one. An entry that no longer
validates (a kind removed, a setting renamed) is skipped at start with a warning, not a refusal to start.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import msgspec

from model_procs.sources import source_problem
from supervisor.config import ConfigError, completed
from wire.model_config import ModelConfig

log = logging.getLogger(__name__)

FILE_NAME = "registry.json"


def decode_model_config(name: str, text: str | bytes) -> ModelConfig:
    """A model's settings as a client sends them (JSON: kind, source, settings), completed and checked."""
    try:
        given = msgspec.json.decode(text, type=ModelConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"model config for '{name}': {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"model config for '{name}' is not JSON: {exc}") from None
    config = completed(name, given)
    problem = source_problem(name, config.kind, config.source)
    if problem is not None:
        raise ConfigError(f"model config for '{name}': source: {problem.reason}; {problem.hint}")
    return config


class Registry:
    """The registered models on disk; only the arbiter thread writes it."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = Path(cache_dir) / FILE_NAME
        self.models: dict[str, ModelConfig] = {}

    def read(self) -> dict[str, ModelConfig]:
        """What was registered before this start; entries that no longer validate are logged and skipped."""
        try:
            raw = msgspec.json.decode(self.path.read_bytes(), type=dict[str, msgspec.Raw])
        except FileNotFoundError:
            return {}
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("registry %s cannot be read (%s); starting with none registered", self.path, exc)
            return {}
        for name, entry in raw.items():
            try:
                self.models[name] = decode_model_config(name, bytes(entry))
            except ConfigError as exc:
                log.warning("registry %s: skipping %s: %s", self.path, name, exc)
        return dict(self.models)

    def put(self, name: str, model: ModelConfig) -> None:
        self._write(self.models | {name: model})

    def remove(self, name: str) -> None:
        self._write({m: c for m, c in self.models.items() if m != name})

    def __contains__(self, name: str) -> bool:
        return name in self.models

    def _write(self, models: dict[str, ModelConfig]) -> None:
        """Atomically: a temporary file beside it, fsync'd, renamed over it. Raises OSError on a full or
        read-only disk, before anything in memory changed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=".registry-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(msgspec.json.format(msgspec.json.encode(models)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(staging, self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        self.models = models
