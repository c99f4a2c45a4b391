"""Falcon responders for the Open Inference Protocol (KServe v2) and its model-repository extension.

The same SupervisorAPI as the seed's routes: a v2 load is a `/model/load`, an infer is a punctuation, a
transcription, a speech-segment search or a stream feed (with Triton's sequence parameters).
"""

from __future__ import annotations

from importlib.metadata import version

import falcon
import msgspec

from api.common.gate import ThreadGate
from api.common.deps import Deps, ModelWork
from api.common.readiness import check_live, check_ready
from api.common.replies import mark_cold_start, server_timing
from api.common.media import MAX_JSON_BYTES, read_body
from api.oip.bodies import (ConfigTensor, DynamicBatching, InferRequest, InferResponse, InstanceGroup, ModelMetadata,
                            ModelReady, OldestSequences, RepositoryIndexRequest, RepositoryLoaded, RepositoryModel,
                            RepositoryRequest, RepositoryState, RepositoryUnloaded, ResponseOutput, SequenceBatching,
                            ServerLive, ServerMetadata, ServerReady, TritonModelConfig)
from api.oip.runners import RUNNERS, Output, only_input
from api.oip.tensors import HEADER_LENGTH, bytes_element, int32_bytes, invalid, read_infer_request
from flows.ports import SupervisorAPI
from wire.errors import ErrorCode, SupervisorError, shown
from api.oip.signatures import SIGNATURES, TensorSpec
from supervisor.kinds import KINDS
from wire.views import ModelView

EXTENSIONS = ["binary_tensor_data", "model_repository", "sequence", "parameters"]
PLATFORM = "funasr"
REPOSITORY_STATES: dict[str, RepositoryState] = {"loaded": "READY", "loading": "LOADING", "unloading": "UNLOADING"}
_encode = msgspec.json.Encoder().encode


class V2:
    """Resolves a v2 model name (and version, when the route has one) to one of our models."""

    def __init__(self, supervisor: SupervisorAPI) -> None:
        self.supervisor = supervisor

    def model(self, name: str, model_version: str | None = None) -> ModelView:
        view = self.supervisor.view(self.supervisor.resolve(name, allow_all=False)[0])
        if model_version not in (None, "", view.version):
            raise SupervisorError(ErrorCode.MODEL_NOT_FOUND,
                                  f"Model {view.model_id} has no version '{shown(model_version)}'",
                                  f"it serves version {view.version}")
        return view


class ServerMetadataResource:
    def __init__(self) -> None:
        self.metadata = ServerMetadata(name="funasr-supervisor", version=version("funasr-supervisor"),
                                       extensions=EXTENSIONS)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.metadata


class ServerLiveResource(V2):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_live(self.supervisor)
        resp.media = ServerLive(live=True)


class ServerReadyResource(V2):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_ready(self.supervisor, "Server is not ready")
        resp.media = ServerReady(ready=True)


class ModelMetadataResource(V2):
    def on_get(self, req: falcon.Request, resp: falcon.Response, model_name: str, model_version: str = "") -> None:
        view = self.model(model_name, model_version)
        kind = KINDS[view.kind]
        resp.media = ModelMetadata(name=view.model_id, versions=[view.version], platform=PLATFORM,
                                   inputs=list(SIGNATURES[kind.name].inputs),
                                   outputs=list(SIGNATURES[kind.name].outputs))


class ModelConfigResource(V2):
    """Triton's model configuration, from the model's kind (its tensors) and its settings (replicas, batching)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, model_name: str, model_version: str = "") -> None:
        view = self.model(model_name, model_version)
        kind, config = KINDS[view.kind], view.config
        delay_us = int(config.max_batch_delay_ms * 1000)
        batches = config.max_batch > 1
        streams = kind.streams
        resp.media = TritonModelConfig(
            name=view.model_id, platform=PLATFORM, backend=PLATFORM, max_batch_size=0,
            input=[config_tensor(t) for t in SIGNATURES[kind.name].inputs],
            output=[config_tensor(t) for t in SIGNATURES[kind.name].outputs],
            instance_group=[InstanceGroup(count=config.replica_limit,
                                          kind="KIND_GPU" if config.device.startswith("cuda") else "KIND_CPU")],
            dynamic_batching=DynamicBatching([config.max_batch], delay_us) if batches and not streams else None,
            sequence_batching=SequenceBatching(int(self.supervisor.settings.stream_expiry_s * 1e6),
                                               OldestSequences(config.max_batch, delay_us)) if streams else None)


def config_tensor(spec: TensorSpec) -> ConfigTensor:
    data_type = "TYPE_STRING" if spec.datatype == "BYTES" else f"TYPE_{spec.datatype}"
    return ConfigTensor(name=spec.name, data_type=data_type, dims=list(spec.shape))


class ModelReadyResource(V2):
    def on_get(self, req: falcon.Request, resp: falcon.Response, model_name: str, model_version: str = "") -> None:
        view = self.model(model_name, model_version)
        if view.status != "loaded":
            raise SupervisorError(ErrorCode.MODEL_NOT_READY, f"Model {view.model_id} is not ready",
                                  f"its status is {view.status}", retry_after_s=5)
        resp.media = ModelReady(name=view.model_id, ready=True)


class InferResource(ModelWork):
    def __init__(self, deps: Deps) -> None:
        super().__init__(deps)
        self.v2 = V2(deps.supervisor)
        self.limit = self.limits.audio_bytes + MAX_JSON_BYTES   # as the seed's routes (JSON samples: ~3x binary)

    def on_post(self, req: falcon.Request, resp: falcon.Response, model_name: str, model_version: str = "") -> None:
        view = self.v2.model(model_name, model_version)
        request, given = read_infer_request(req, self.limit)
        if request.model_name not in (None, "", model_name) or request.model_version not in (None, "", view.version):
            raise invalid("Body names another model", f"the body names model '{shown(request.model_name or '')}' "
                          f"version '{shown(request.model_version or '')}'; the URL names '{shown(model_name)}' "
                          f"(version {view.version})")
        kind = KINDS[view.kind]
        wanted = requested_outputs(view, request)
        tensor = only_input(kind, view.model_id, given)
        with self.gate.admit():
            outcome = RUNNERS[kind.answers](self, view.model_id, tensor, request.parameters, wanted)
        outputs = [o for o in outcome.outputs if not request.outputs or o.name in wanted]
        respond(resp, request, view, outputs)
        mark_cold_start(resp, outcome.cold_start)
        server_timing(resp, outcome.model_ms)


def requested_outputs(view: ModelView, request: InferRequest) -> set[str]:
    known = [t.name for t in SIGNATURES[view.kind].outputs]
    wanted = {o.name for o in request.outputs or []}
    unknown = wanted - set(known)
    if unknown:
        raise invalid("Unknown output", f"{view.model_id} has no output {sorted(shown(n) for n in unknown)}; "
                      f"its outputs: {known}")
    return wanted


def respond(resp: falcon.Response, request: InferRequest, view: ModelView, outputs: list[Output]) -> None:
    """JSON data, or the binary extension for the outputs asked for as binary (`binary_data_output` for all)."""
    binary_default = request.parameters.get("binary_data_output") is True
    asked = {o.name: o.parameters.get("binary_data", binary_default) is True for o in request.outputs or []}
    described, blobs = [], []
    for output in outputs:
        if asked.get(output.name, binary_default):
            blob = bytes_element([v.encode() for v in output.values]) if output.datatype == "BYTES" \
                else int32_bytes(output.values)
            blobs.append(blob)
            described.append(ResponseOutput(output.name, output.datatype, output.shape,
                                            parameters={"binary_data_size": len(blob)}))
        else:
            described.append(ResponseOutput(output.name, output.datatype, output.shape, data=output.values))
    body = InferResponse(model_name=view.model_id, model_version=view.version, id=request.id, outputs=described)
    if not blobs:
        resp.media = body
        return
    head = _encode(body)
    resp.set_header(HEADER_LENGTH, str(len(head)))
    resp.content_type = "application/octet-stream"
    resp.data = head + b"".join(blobs)


# -- model repository ---------------------------------------------------------------------------------
class RepositoryIndexResource(V2):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_ready = read_body(req, RepositoryIndexRequest, optional=True).ready
        models = [repository_entry(view) for view in self.supervisor.snapshot.models.values()]
        resp.media = [m for m in models if m.state == "READY" or not only_ready]


def repository_entry(view: ModelView) -> RepositoryModel:
    state = REPOSITORY_STATES.get(view.status, "UNAVAILABLE")
    reason = "" if state != "UNAVAILABLE" else (view.last_error or f"{view.status}; load it to use it")
    return RepositoryModel(name=view.model_id, version=view.version, state=state, reason=reason)


class RepositoryLoadResource(V2):
    def __init__(self, supervisor: SupervisorAPI, gate: ThreadGate) -> None:
        super().__init__(supervisor)
        self.gate = gate

    def on_post(self, req: falcon.Request, resp: falcon.Response, model_name: str) -> None:
        parameters = read_body(req, RepositoryRequest, optional=True).parameters
        files = [k for k in parameters if k.startswith("file:")]
        if files:
            raise invalid("Model file overrides are not supported",
                          f"{shown(', '.join(files))}: a model's files come from its source; register a model "
                          "directory with config={\"kind\": ..., \"source\": \"/path\"}")
        if "config" in parameters:
            config = parameters["config"]
            if not isinstance(config, str):
                raise invalid("Bad parameter 'config'", "'config' must be a JSON string: kind, source, settings")
            self.supervisor.register(model_name, config)
        model_id = self.model(model_name).model_id
        with self.gate.admit():  # a load holds its thread until the model is ready
            self.supervisor.await_load(self.supervisor.request_load(model_id))
        resp.media = RepositoryLoaded(name=model_id, load=True)


class RepositoryUnloadResource(RepositoryLoadResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, model_name: str) -> None:
        read_body(req, RepositoryRequest, optional=True)  # unload_dependents: nothing depends on another model
        model_id = self.model(model_name).model_id
        with self.gate.admit():
            self.supervisor.unload(model_id)
        resp.media = RepositoryUnloaded(name=model_id, unload=True)
