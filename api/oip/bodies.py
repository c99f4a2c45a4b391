"""Open Inference Protocol (KServe v2) bodies, as msgspec Structs: metadata, inference, model repository.

Field names follow the protocol's JSON (https://kserve.github.io/website/docs/concepts/architecture/data-plane/
v2-protocol), so KServe, Triton and MLServer clients read them unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from api.oip.signatures import TensorSpec

RepositoryState = Literal["READY", "UNAVAILABLE", "LOADING", "UNLOADING"]
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                   "FP32", "FP64", "BYTES", "BF16"]
Parameters = dict[str, str | int | float | bool]


class OipError(msgspec.Struct, frozen=True):
    error: str


class ServerMetadata(msgspec.Struct, frozen=True):
    name: str
    version: str
    extensions: list[str]


class ServerLive(msgspec.Struct, frozen=True):
    live: bool


class ServerReady(msgspec.Struct, frozen=True):
    ready: bool


class ModelReady(msgspec.Struct, frozen=True):
    name: str
    ready: bool


class ModelMetadata(msgspec.Struct, frozen=True):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]    # each kind's own tensors (api/oip/signatures.py), shape -1: any size
    outputs: list[TensorSpec]


# -- Triton's model configuration (GET /v2/models/{name}/config), what tritonclient and perf_analyzer read ----
class ConfigTensor(msgspec.Struct, frozen=True):
    name: str
    data_type: str              # TYPE_INT16, TYPE_STRING (BYTES), TYPE_INT32, ...
    dims: list[int]             # without a batch dimension: max_batch_size is 0


class InstanceGroup(msgspec.Struct, frozen=True):
    count: int                  # the model's max_replicas: one OS process each
    kind: Literal["KIND_CPU", "KIND_GPU"]


class DynamicBatching(msgspec.Struct, frozen=True):
    preferred_batch_size: list[int]
    max_queue_delay_microseconds: int


class OldestSequences(msgspec.Struct, frozen=True):
    max_candidate_sequences: int
    max_queue_delay_microseconds: int


class SequenceBatching(msgspec.Struct, frozen=True):
    max_sequence_idle_microseconds: int
    oldest: OldestSequences


class TritonModelConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """Requests carry no batch dimension (`max_batch_size` 0); the server batches requests (`dynamic_batching`)
    or streams (`sequence_batching`, Oldest: a replica takes the chunks of several streams at once) itself."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    instance_group: list[InstanceGroup]
    dynamic_batching: DynamicBatching | None = None
    sequence_batching: SequenceBatching | None = None


# -- inference ----------------------------------------------------------------------------------------
class RequestInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters = {}
    data: list[Any] | None = None   # absent when the tensor comes as binary data after the JSON header


class RequestOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    parameters: Parameters = {}


class InferRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`model_name` and `model_version` are what KServe's SDK puts in every body: taken when they agree with the
    URL's."""

    inputs: list[RequestInput]
    id: str | None = None
    parameters: Parameters = {}
    outputs: list[RequestOutput] | None = None
    model_name: str | None = None
    model_version: str | None = None


class ResponseOutput(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: Parameters = {}
    data: list[Any] | None = None


class InferResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    model_name: str
    outputs: list[ResponseOutput]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = {}


# -- model repository ---------------------------------------------------------------------------------
class RepositoryIndexRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ready: bool = False   # true: only the models that are ready


class RepositoryModel(msgspec.Struct, frozen=True):
    name: str
    version: str
    state: RepositoryState
    reason: str


class RepositoryRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Load/unload. `config` (a JSON string: kind, source, settings) registers the model before loading it;
    Triton's `unload_dependents` is accepted (nothing here depends on another model); `file:` overrides are
    refused (a model's files come from its source)."""

    parameters: dict[str, Any] = {}


class RepositoryLoaded(msgspec.Struct, frozen=True):
    name: str
    load: bool


class RepositoryUnloaded(msgspec.Struct, frozen=True):
    name: str
    unload: bool
