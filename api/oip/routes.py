"""The Open Inference Protocol (KServe v2, Triton's HTTP API): server and model metadata, health, infer, the
model repository. Its errors are `{"error": "..."}`."""

from __future__ import annotations

from api.common.errors import ErrorShape
from api.common.routing import Adapter, Op, Route
from api.oip import bodies as v2
from api.oip.resources import (InferResource, ModelConfigResource, ModelMetadataResource, ModelReadyResource,
                               RepositoryIndexResource, RepositoryLoadResource, RepositoryUnloadResource,
                               ServerLiveResource, ServerMetadataResource, ServerReadyResource)

INFER_ERRORS = ("STREAM_NOT_FOUND", "STREAM_LOST", "UNSUPPORTED_MEDIA", "INVALID_REQUEST", "MODEL_NOT_FOUND",
                "MODEL_NOT_READY", "MODEL_CRASHED", "INFERENCE_TIMEOUT", "LOAD_FAILED", "LOAD_TIMEOUT",
                "INSUFFICIENT_MEMORY", "PAYLOAD_TOO_LARGE", "INTERNAL")
LOAD_ERRORS = ("INVALID_REQUEST", "MODEL_NOT_FOUND", "CONFLICT", "INTERNAL", "PAYLOAD_TOO_LARGE",
               "INSUFFICIENT_MEMORY", "LOAD_FAILED", "LOAD_TIMEOUT")


def model_routes(path: str) -> list[Route]:
    """A model's routes, under its name and under a version of it."""
    return [
        Route(path, lambda d: ModelMetadataResource(d.supervisor), (
            Op("get", "Model metadata: inputs and outputs", responses={200: v2.ModelMetadata},
               errors=("MODEL_NOT_FOUND",)),)),
        Route(f"{path}/ready", lambda d: ModelReadyResource(d.supervisor), (
            Op("get", "Model readiness", responses={200: v2.ModelReady}, errors=("MODEL_NOT_FOUND", "MODEL_NOT_READY")),
        )),
        Route(f"{path}/config", lambda d: ModelConfigResource(d.supervisor), (
            Op("get", "Triton's model configuration: tensors, replicas, batching (tritonclient's get_model_config, "
               "perf_analyzer)", responses={200: v2.TritonModelConfig}, errors=("MODEL_NOT_FOUND",)),)),
        Route(f"{path}/infer", InferResource, (
            Op("post", "Inference (JSON, or the binary tensor data extension; Triton's sequence parameters stream "
               "audio)", v2.InferRequest, {200: v2.InferResponse}, INFER_ERRORS),)),
    ]


OIP = Adapter("oip", [
    Route("/v2", lambda d: ServerMetadataResource(), (
        Op("get", "Server metadata", responses={200: v2.ServerMetadata}),)),
    Route("/v2/health/live", lambda d: ServerLiveResource(d.supervisor), (
        Op("get", "Server liveness", responses={200: v2.ServerLive}, errors=("INTERNAL",)),)),
    Route("/v2/health/ready", lambda d: ServerReadyResource(d.supervisor), (
        Op("get", "Server readiness: every required model is loaded", responses={200: v2.ServerReady},
           errors=("MODEL_NOT_READY",)),)),
    *model_routes("/v2/models/{model_name}"),
    *model_routes("/v2/models/{model_name}/versions/{model_version}"),
    Route("/v2/repository/index", lambda d: RepositoryIndexResource(d.supervisor), (
        Op("post", "Every model's state", v2.RepositoryIndexRequest, {200: list[v2.RepositoryModel]},
           ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE")),)),
    Route("/v2/repository/models/{model_name}/load", lambda d: RepositoryLoadResource(d.supervisor, d.gate), (
        Op("post", "Load a model, and wait until it is ready; with parameters.config (a JSON string: kind, source, "
           "settings) register it first", v2.RepositoryRequest, {200: v2.RepositoryLoaded}, LOAD_ERRORS),)),
    Route("/v2/repository/models/{model_name}/unload", lambda d: RepositoryUnloadResource(d.supervisor, d.gate), (
        Op("post", "Unload a model", v2.RepositoryRequest, {200: v2.RepositoryUnloaded},
           ("INVALID_REQUEST", "MODEL_NOT_FOUND", "PAYLOAD_TOO_LARGE")),)),
], ErrorShape("/v2", lambda status, code, message, details, context: v2.OipError(
    error=f"{message}: {details}" if details else message), v2.OipError))
