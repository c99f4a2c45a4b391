"""Server configuration: a TOML file decoded by msgspec into typed Structs; unknown keys fail at start-up."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from supervisor.cpus import auto_replicas, auto_threads, usable_cores
from supervisor.kinds import KINDS, SEED_MODELS, Kind
from wire.model_config import ModelConfig

DEMO = "demo"
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
RESERVED_NAMES = frozenset({"all"})  # `load all`, `unload all`
DEFAULT_CACHE_DIR = Path(os.environ.get("FUNASR_SUPERVISOR_CACHE", Path.home() / ".cache" / "funasr-supervisor"))


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0
    load_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 300.0  # cold starts and preloads
    stream_expiry_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 60.0
    max_streams_per_replica: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 64  # each holds a model cache
    max_stream_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 600.0  # audio per stream (cost grows with it)
    max_audio_mb: Annotated[float, msgspec.Meta(gt=0, le=2048)] = 50.0
    max_audio_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 7200.0  # a file's decoded length
    max_decodes: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2  # files decoding at once (x max_audio_s: memory)
    max_text_kb: Annotated[float, msgspec.Meta(gt=0, le=10240)] = 64.0
    heartbeat_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0   # silent this long -> hung
    restart_budget: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 5             # restarts per window per model
    restart_window_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    restart_backoff_max_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0  # 1 s, 2 s, 4 s ... capped
    memory_budget_mb: Annotated[float, msgspec.Meta(ge=0)] = 0.0     # all models together; 0 = what the host has
    memory_margin_mb: Annotated[float, msgspec.Meta(ge=0)] = 256.0   # kept free beyond a model's footprint
    evict_idle: bool = True          # free memory for a load by unloading idle, non-required models (LRU)
    drain_timeout_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0  # shutdown waits for requests
    http_threads: Annotated[int, msgspec.Meta(ge=4, le=1024)] = 32        # waitress worker threads
    control_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4        # of those, kept for control routes
    connection_limit: Annotated[int, msgspec.Meta(ge=16, le=100000)] = 2000  # open client connections
    channel_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0  # an idle or stalled connection
    seed_models: bool = True         # streaming_asr, punctuation and vad are served even when not named
    api_keys: dict[str, Literal["admin", "user"]] = {}  # key -> role: admin changes models, user uses them
    transcribe_piece_ms: Annotated[int, msgspec.Meta(ge=600, le=60000, multiple_of=600)] = 1200  # audio per turn
    # WebSocket protocols (FunASR's runtime protocol, OpenAI's Realtime transcription); ws_port 0: off
    ws_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 10095
    ws_max_sessions: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 256       # open WebSocket connections
    ws_session_max_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 3600.0  # audio per session
    ws_idle_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0   # no frame this long: closed (< stream expiry)
    ws_max_frame_mb: Annotated[float, msgspec.Meta(gt=0, le=64)] = 16.0       # one message (OpenAI's append: 15 MiB)
    tls_cert: str = ""               # PEM certificate (chain) and its key: the WebSocket port speaks wss://
    tls_key: str = ""


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    models: dict[str, ModelConfig] = {}
    server: ServerSettings = ServerSettings()


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def check_name(name: str) -> str | None:
    """What is wrong with a model name, or None."""
    if not MODEL_NAME.fullmatch(name):
        return (f"model name '{name[:80]}' must be 1-64 lower-case letters, digits, '_', '.' or '-', starting "
                "with a letter or digit")
    if name in RESERVED_NAMES:
        return f"model name '{name}' is reserved (it means every model)"
    return None


def completed(name: str, model: ModelConfig) -> ModelConfig:
    """A model's config with its kind and source filled in; ConfigError says which key is wrong."""
    problem = check_name(name)
    if problem:
        raise ConfigError(problem)
    if "auto" in (model.threads, model.max_replicas):  # the cgroup is read only for a model that asks
        model = with_cores(model, usable_cores())
    kind = model.kind or (name if name in SEED_MODELS else "")
    if kind not in KINDS:
        given = f"kind '{model.kind}' is unknown" if model.kind else "it has no kind"
        raise ConfigError(f"[models.{name}] {given}; set kind = one of: {', '.join(KINDS)}")
    if model.min_replicas > model.replica_limit:
        raise ConfigError(f"[models.{name}] min_replicas ({model.min_replicas}) is above max_replicas "
                          f"({model.max_replicas})")
    if model.hotwords and not KINDS[kind].hotwords:
        raise ConfigError(f"[models.{name}] hotwords: a {kind} model takes none")
    if model.quantize != "none" and model.engine != "onnx":
        raise ConfigError(f"[models.{name}] quantize = \"{model.quantize}\" needs engine = \"onnx\"")
    return msgspec.structs.replace(model, kind=kind, source=model.source or KINDS[kind].default_source,
                                   max_batch=model.max_batch or default_batch(KINDS[kind], model.engine))


def default_batch(kind: Kind, engine: str) -> int:
    """`max_batch = 0`: the kind's, where batching was measured to pay with this engine."""
    return kind.max_batch_onnx if engine == "onnx" else kind.max_batch


def with_cores(model: ModelConfig, cores: int) -> ModelConfig:
    """`threads` and `max_replicas` of "auto" as numbers for a box of `cores` usable cores (supervisor.cpus)."""
    threads = auto_threads(cores) if model.threads == "auto" else model.threads
    replicas = auto_replicas(cores, threads) if model.max_replicas == "auto" else model.max_replicas
    return msgspec.structs.replace(model, threads=threads, max_replicas=replicas)


def with_defaults(config: Config) -> Config:
    """The seed's models are added (unless seed_models = false); each model gets its kind and source."""
    if config.server.control_threads >= config.server.http_threads:
        raise ConfigError(f"[server] control_threads ({config.server.control_threads}) must be below http_threads "
                          f"({config.server.http_threads}): the rest serve the models")
    seeds = {name: ModelConfig() for name in SEED_MODELS} if config.server.seed_models else {}
    models = {name: completed(name, model) for name, model in (seeds | config.models).items()}
    if not models:
        raise ConfigError("no models: name one under [models.<name>], or leave [server] seed_models on")
    return msgspec.structs.replace(config, models=models)


def load_config(spec: str | None) -> Config:
    """`None` → the real FunASR models (hub aliases, the VAD's wheel); `demo` → generated tiny models and the
    real VAD; else a TOML path."""
    if spec is None:
        return with_defaults(Config())
    if spec == DEMO:
        return with_defaults(Config(models={m: ModelConfig(source=KINDS[m].demo_source) for m in SEED_MODELS}))
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        return with_defaults(msgspec.toml.decode(data, type=Config))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config {path}: {named_model(str(exc), data)}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc


def named_model(error: str, data: bytes) -> str:
    """msgspec says `$.models[...]` for a bad model table: say which model it is."""
    if "$.models[...]" not in error:
        return error
    for name, table in msgspec.toml.decode(data).get("models", {}).items():
        try:
            msgspec.convert(table, ModelConfig)
        except msgspec.ValidationError:
            return error.replace("$.models[...]", f"$.models.{name}")
    return error


def with_models(config: Config, **models: ModelConfig) -> Config:
    """A copy of `config` with some models' settings replaced (tests and the benchmark use it)."""
    return msgspec.structs.replace(config, models=config.models | models)
