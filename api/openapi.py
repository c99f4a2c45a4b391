"""`GET /openapi.json`: an OpenAPI 3.1 document built from the same msgspec Structs that validate requests.

The routes table below is the one place that says which body and responses each route has; the schemas
themselves come from `msgspec.json.schema_components`, so the document cannot drift from the code.
"""

from __future__ import annotations

import functools
from typing import Any

import falcon
import msgspec

from api import oip_bodies as v2, openai_formats as oa
from wire import bodies
from api.auth import needs_admin
from api.errors import HTTP_STATUS, OIP_PREFIX, OPENAI_PREFIX
from wire.model_config import ModelConfig

REF = "#/components/schemas/{name}"
JSON = "application/json"
AUDIO_TYPES = ("audio/L16", "application/octet-stream")
FILE_TYPES = ("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg", "audio/webm", "audio/mp4")  # any audio/*
INFERENCE_ERRORS = ("INVALID_REQUEST", "MODEL_NOT_FOUND", "MODEL_NOT_READY", "MODEL_CRASHED", "INFERENCE_TIMEOUT",
                    "LOAD_FAILED", "LOAD_TIMEOUT", "INSUFFICIENT_MEMORY", "PAYLOAD_TOO_LARGE", "INTERNAL")
STREAM_ERRORS = ("STREAM_NOT_FOUND", "STREAM_LOST", "UNSUPPORTED_MEDIA", *INFERENCE_ERRORS)
V2_MODEL = "/v2/models/{model_name}"
V2_VERSION = "/v2/models/{model_name}/versions/{model_version}"

# (method, path, summary, request body (Struct, media types or None), {status: response Struct(s)}, error codes)
ROUTES: list[tuple[str, str, str, Any, dict[int, type], tuple[str, ...]]] = [
    ("get", "/healthz", "Liveness: the supervisor loop runs", None, {200: bodies.HealthResponse}, ()),
    ("get", "/readyz", "Readiness: every required model is loaded", None, {200: bodies.ReadyResponse},
     ("MODEL_NOT_READY",)),
    ("get", "/model/{model_type}/ready", "One model's readiness", None, {200: bodies.ModelReadyResponse},
     ("MODEL_NOT_FOUND", "MODEL_NOT_READY")),
    ("get", "/model/info", "Every model's status, memory and counters", None, {200: bodies.InfoResponse}, ()),
    ("post", "/model/info", "Model info, optionally detailed and with metrics", bodies.InfoRequest,
     {200: bodies.InfoResponse}, ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE")),
    ("post", "/model/load", "Load one model or all, sync or async", bodies.LoadRequest,
     {200: (bodies.LoadCompleted, bodies.LoadAccepted), 202: bodies.LoadAccepted},
     ("INVALID_REQUEST", "MODEL_NOT_FOUND", "CONFLICT", "PAYLOAD_TOO_LARGE", "INSUFFICIENT_MEMORY", "LOAD_FAILED",
      "LOAD_TIMEOUT")),
    ("get", "/model/load/{load_id}", "A load job's progress", None, {200: bodies.JobResponse}, ("LOAD_NOT_FOUND",)),
    ("delete", "/model/unload/{model_type}", "Stop a model's process (or all)", None,
     {200: bodies.UnloadResponse}, ("MODEL_NOT_FOUND",)),
    ("put", "/model/registry/{model_type}", "Register a model (JSON: kind, source, settings), or replace a stopped "
     "one; kept across restarts", ModelConfig, {200: bodies.RegistryResponse, 201: bodies.RegistryResponse},
     ("INVALID_REQUEST", "CONFLICT", "PAYLOAD_TOO_LARGE", "INTERNAL")),
    ("delete", "/model/registry/{model_type}", "Forget a registered model that is stopped", None,
     {200: bodies.RegistryResponse}, ("MODEL_NOT_FOUND", "CONFLICT", "INTERNAL")),
    ("post", "/punctuation", "Punctuate a text", bodies.PunctuateRequest, {200: bodies.PunctuateResponse},
     INFERENCE_ERRORS),
    ("post", "/asr/streams", "Open a live ASR stream", bodies.StreamOpenRequest, {201: bodies.StreamOpenResponse},
     INFERENCE_ERRORS),
    ("post", "/asr/streams/{stream_id}/audio", "Send audio to a stream", AUDIO_TYPES,
     {200: bodies.StreamTextResponse}, STREAM_ERRORS),
    ("post", "/asr/streams/{stream_id}/finish", "End a stream: its final text", None,
     {200: bodies.StreamTextResponse}, STREAM_ERRORS),
    ("delete", "/asr/streams/{stream_id}", "Abort a stream", None, {200: bodies.StreamClosedResponse},
     ("STREAM_NOT_FOUND",)),
    ("post", "/asr/transcribe", "Transcribe a whole recording", (*FILE_TYPES, *AUDIO_TYPES),
     {200: bodies.TranscribeResponse}, ("UNSUPPORTED_MEDIA", *INFERENCE_ERRORS)),
    ("post", "/vad", "Find the speech segments of a whole recording", (*FILE_TYPES, *AUDIO_TYPES),
     {200: bodies.VadResponse}, ("UNSUPPORTED_MEDIA", *INFERENCE_ERRORS)),
    ("post", "/vad/streams", "Open a live VAD stream", None, {201: bodies.StreamOpenResponse}, INFERENCE_ERRORS),
    ("post", "/vad/streams/{stream_id}/audio", "Send audio to a VAD stream: the segments it closed", AUDIO_TYPES,
     {200: bodies.VadStreamResponse}, STREAM_ERRORS),
    ("post", "/vad/streams/{stream_id}/finish", "End a VAD stream: its last segments", None,
     {200: bodies.VadStreamResponse}, STREAM_ERRORS),
    ("delete", "/vad/streams/{stream_id}", "Abort a VAD stream", None, {200: bodies.StreamClosedResponse},
     ("STREAM_NOT_FOUND",)),
    # OpenAI's audio API: multipart in, errors as `{"error": {"message", "type", "param", "code"}}`
    ("post", "/v1/audio/transcriptions", "OpenAI transcription (multipart: file, model, prompt, response_format, "
     "timestamp_granularities[], stream)", ("multipart/form-data",), {200: (oa.Transcription, oa.VerboseTranscription)},
     ("UNSUPPORTED_MEDIA", *INFERENCE_ERRORS)),
    ("get", "/v1/models", "The speech models a transcription may name", None, {200: oa.ModelList}, ()),
    ("post", "/v1/audio/translations", "Refused: FunASR's models do not translate", None, {}, ("INVALID_REQUEST",)),
    # Open Inference Protocol (KServe v2): errors are `{"error": "..."}`
    ("get", "/v2", "Server metadata", None, {200: v2.ServerMetadata}, ()),
    ("get", "/v2/health/live", "Server liveness", None, {200: v2.ServerLive}, ("INTERNAL",)),
    ("get", "/v2/health/ready", "Server readiness: every required model is loaded", None, {200: v2.ServerReady},
     ("MODEL_NOT_READY",)),
    *[("get", path, "Model metadata: inputs and outputs", None, {200: v2.ModelMetadata}, ("MODEL_NOT_FOUND",))
      for path in (V2_MODEL, V2_VERSION)],
    *[("get", f"{path}/config", "Triton's model configuration: tensors, replicas, batching (tritonclient's "
       "get_model_config, perf_analyzer)", None, {200: v2.TritonModelConfig}, ("MODEL_NOT_FOUND",))
      for path in (V2_MODEL, V2_VERSION)],
    *[("get", f"{path}/ready", "Model readiness", None, {200: v2.ModelReady}, ("MODEL_NOT_FOUND", "MODEL_NOT_READY"))
      for path in (V2_MODEL, V2_VERSION)],
    *[("post", f"{path}/infer", "Inference (JSON, or the binary tensor data extension; Triton's sequence "
       "parameters stream audio)", v2.InferRequest, {200: v2.InferResponse},
       STREAM_ERRORS) for path in (V2_MODEL, V2_VERSION)],
    ("post", "/v2/repository/index", "Every model's state", v2.RepositoryIndexRequest,
     {200: list[v2.RepositoryModel]}, ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE")),
    ("post", "/v2/repository/models/{model_name}/load", "Load a model, and wait until it is ready; with "
     "parameters.config (a JSON string: kind, source, settings) register it first", v2.RepositoryRequest,
     {200: v2.RepositoryLoaded}, ("INVALID_REQUEST", "MODEL_NOT_FOUND", "CONFLICT", "INTERNAL", "PAYLOAD_TOO_LARGE",
                                  "INSUFFICIENT_MEMORY", "LOAD_FAILED", "LOAD_TIMEOUT")),
    ("post", "/v2/repository/models/{model_name}/unload", "Unload a model", v2.RepositoryRequest,
     {200: v2.RepositoryUnloaded}, ("INVALID_REQUEST", "MODEL_NOT_FOUND", "PAYLOAD_TOO_LARGE")),
]
OPTIONAL_BODIES = (bodies.InfoRequest, bodies.StreamOpenRequest, v2.RepositoryIndexRequest, v2.RepositoryRequest)


def as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def response_types() -> list[type]:
    return [bodies.ErrorBody, v2.OipError, oa.OpenAIError,
            *(t for *_, responses, _ in ROUTES for ts in responses.values() for t in as_tuple(ts))]


def response_schema(types: type | tuple[type, ...], schemas: dict[type, dict]) -> dict:
    options = [schemas[t] for t in as_tuple(types)]
    return options[0] if len(options) == 1 else {"anyOf": options}


def request_body(body: Any, refs: dict[type, dict]) -> dict | None:
    if body is None:
        return None
    if isinstance(body, tuple):  # raw bytes: audio
        return {"required": True, "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in body}}
    content = {JSON: {"schema": refs[body]}}
    if body is v2.InferRequest:  # the binary extension: the JSON header, then the tensors' bytes
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"required": body not in OPTIONAL_BODIES, "content": content}


def path_schema(name: str, models: tuple[str, ...]) -> dict:
    """A v2 model name is one of the models configured at start (the fuzz then reaches them); anything else is
    a string."""
    return {"type": "string", "enum": list(models)} if name == "{model_name}" else {"type": "string"}


QUERY = {"punctuate": "boolean", "vad": "boolean", "hotwords": "string"}
MODEL_ROUTES = ("/punctuation", "/asr/", "/vad")  # take ?model=<name> of the route's kind


def query_parameters(path: str) -> list[dict]:
    names = [("model", "string")] if path.startswith(MODEL_ROUTES) else []
    names += list(QUERY.items()) if path == "/asr/transcribe" else []
    return [{"name": name, "in": "query", "required": False, "schema": {"type": kind}} for name, kind in names]


def operation(method: str, path: str, summary: str, body: Any, responses: dict, errors: tuple,
              schemas: dict, models: tuple[str, ...]) -> dict:
    op: dict = {"summary": summary, "operationId": f"{method}_{path.strip('/').replace('/', '_')}",
                "responses": {str(status): {"description": "success",
                                            "content": {JSON: {"schema": response_schema(t, schemas)}}}
                              for status, t in responses.items()}}
    params = [{"name": name.strip("{}"), "in": "path", "required": True, "schema": path_schema(name, models)}
              for name in path.split("/") if name.startswith("{")]
    params += query_parameters(path)
    if params:
        op["parameters"] = params
    if (rb := request_body(body, schemas)) is not None:
        op["requestBody"] = rb
    by_status: dict[int, list[str]] = {}
    for code in ("UNAUTHORIZED", *(("FORBIDDEN",) if needs_admin(method.upper(), path) else ()), *errors):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    error_type = v2.OipError if path.startswith(OIP_PREFIX) else oa.OpenAIError if path.startswith(OPENAI_PREFIX) \
        else bodies.ErrorBody
    error_schema = schemas[error_type]
    for status, codes in by_status.items():
        op["responses"][str(status)] = {"description": "error: " + ", ".join(codes),
                                        "content": {JSON: {"schema": error_schema}}}
    if body is v2.InferRequest:  # outputs asked for as binary come after the JSON header
        op["responses"]["200"]["content"]["application/octet-stream"] = {"schema": {"type": "string",
                                                                                    "format": "binary"}}
    return op


@functools.cache
def openapi_document(version: str, models: tuple[str, ...]) -> dict:
    request_types = [b for *_, b, _, _ in ROUTES if isinstance(b, type)]
    all_types = [*request_types, *response_types()]
    refs, components = msgspec.json.schema_components(all_types, ref_template=REF)
    schemas = dict(zip(all_types, refs))
    paths: dict[str, dict] = {}
    for method, path, summary, body, responses, errors in ROUTES:
        paths.setdefault(path, {})[method] = operation(method, path, summary, body, responses, errors, schemas,
                                                                models)
    paths["/openapi.json"] = {"get": {"summary": "This document", "operationId": "get_openapi",
                                      "responses": {"200": {"description": "OpenAPI 3.1 document"}}}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "operationId": "get_metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "funasr-supervisor", "version": version,
                 "description": "Process-per-model lifecycle server for FunASR models. Error codes: "
                                + ", ".join(f"{c} ({s})" for c, s in HTTP_STATUS.items())},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


class OpenApiResource:
    def __init__(self, version: str, models: tuple[str, ...]) -> None:
        self.document = openapi_document(version, models)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document
