"""The seed's API: probes, lifecycle, the registry, and each model kind's own routes (punctuation, live streams,
whole recordings), answered in the seed's error envelope."""

from __future__ import annotations

from api.common.errors import SEED_SHAPE
from api.common.observability import MetricsResource, ModelReadyResource, ReadyResource
from api.common.openapi import OpenApiResource
from api.common.routing import Adapter, Op, Route
from api.seed.inference import (PunctuationResource, StreamFeedResource, StreamResource, StreamsResource,
                                TranscribeResource, VadResource)
from api.seed.resources import (HealthResource, LoadStatusResource, ModelInfoResource, ModelLoadResource,
                                ModelUnloadResource, RegistryResource)
from supervisor.kinds import KINDS, Kind
from wire import bodies
from wire.model_config import ModelConfig

AUDIO_TYPES = ("audio/L16", "application/octet-stream")
FILE_TYPES = ("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg", "audio/webm", "audio/mp4")  # any audio/*
INFERENCE_ERRORS = ("INVALID_REQUEST", "MODEL_NOT_FOUND", "MODEL_NOT_READY", "MODEL_CRASHED", "INFERENCE_TIMEOUT",
                    "LOAD_FAILED", "LOAD_TIMEOUT", "INSUFFICIENT_MEMORY", "PAYLOAD_TOO_LARGE", "INTERNAL")
STREAM_ERRORS = ("STREAM_NOT_FOUND", "STREAM_LOST", "UNSUPPORTED_MEDIA", *INFERENCE_ERRORS)
MODEL = (("model", "string"),)          # ?model=<name>: a model of the route's kind
TRANSCRIBE_QUERY = (*MODEL, ("punctuate", "boolean"), ("vad", "boolean"), ("hotwords", "string"))

# Where each kind's routes live; kinds that share a prefix (both ASR kinds transcribe at /asr/transcribe) share
# its resource, which picks the model.
KIND_ROUTES = {"streaming_asr": "/asr", "asr": "/asr", "punctuation": "/punctuation", "vad": "/vad"}

LIFECYCLE = [
    Route("/healthz", lambda d: HealthResource(d.supervisor), (
        Op("get", "Liveness: the supervisor loop runs", responses={200: bodies.HealthResponse}),)),
    Route("/readyz", lambda d: ReadyResource(d.supervisor), (
        Op("get", "Readiness: every required model is loaded", responses={200: bodies.ReadyResponse},
           errors=("MODEL_NOT_READY",)),)),
    Route("/metrics", lambda d: MetricsResource(d.supervisor), (
        Op("get", "Prometheus metrics", responses={200: "text/plain"}),)),
    Route("/openapi.json", lambda d: OpenApiResource(d), (
        Op("get", "This document", responses={200: "application/json"}),)),
    Route("/model/{model_type}/ready", lambda d: ModelReadyResource(d.supervisor), (
        Op("get", "One model's readiness", responses={200: bodies.ModelReadyResponse},
           errors=("MODEL_NOT_FOUND", "MODEL_NOT_READY")),)),
    Route("/model/info", lambda d: ModelInfoResource(d.supervisor), (
        Op("get", "Every model's status, memory and counters", responses={200: bodies.InfoResponse}),
        Op("post", "Model info, optionally detailed and with metrics", bodies.InfoRequest,
           {200: bodies.InfoResponse}, ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE")))),
    Route("/model/load", lambda d: ModelLoadResource(d.supervisor, d.gate), (
        Op("post", "Load one model or all, sync or async", bodies.LoadRequest,
           {200: (bodies.LoadCompleted, bodies.LoadAccepted), 202: bodies.LoadAccepted},
           ("INVALID_REQUEST", "MODEL_NOT_FOUND", "CONFLICT", "PAYLOAD_TOO_LARGE", "INSUFFICIENT_MEMORY",
            "LOAD_FAILED", "LOAD_TIMEOUT")),)),
    Route("/model/load/{load_id}", lambda d: LoadStatusResource(d.supervisor), (
        Op("get", "A load job's progress", responses={200: bodies.JobResponse}, errors=("LOAD_NOT_FOUND",)),)),
    Route("/model/unload/{model_type}", lambda d: ModelUnloadResource(d.supervisor, d.gate), (
        Op("delete", "Stop a model's process (or all)", responses={200: bodies.UnloadResponse},
           errors=("MODEL_NOT_FOUND",)),)),
    Route("/model/registry/{model_type}", lambda d: RegistryResource(d.supervisor), (
        Op("put", "Register a model (JSON: kind, source, settings), or replace a stopped one; kept across "
           "restarts", ModelConfig, {200: bodies.RegistryResponse, 201: bodies.RegistryResponse},
           ("INVALID_REQUEST", "CONFLICT", "PAYLOAD_TOO_LARGE", "INTERNAL")),
        Op("delete", "Forget a registered model that is stopped", responses={200: bodies.RegistryResponse},
           errors=("MODEL_NOT_FOUND", "CONFLICT", "INTERNAL")))),
]


def kind_routes(kind: Kind, prefix: str) -> list[Route]:
    """A kind's routes, from what it answers and whether it streams."""
    if kind.answers == "text":
        routes = [Route(prefix, PunctuationResource, (
            Op("post", "Punctuate a text", bodies.PunctuateRequest, {200: bodies.PunctuateResponse},
               INFERENCE_ERRORS, MODEL),))]
    elif kind.answers == "transcript":
        routes = [Route(f"{prefix}/transcribe", TranscribeResource, (
            Op("post", "Transcribe a whole recording", (*FILE_TYPES, *AUDIO_TYPES), {200: bodies.TranscribeResponse},
               ("UNSUPPORTED_MEDIA", *INFERENCE_ERRORS), TRANSCRIBE_QUERY),))]
    else:
        routes = [Route(prefix, VadResource, (
            Op("post", "Find the speech segments of a whole recording", (*FILE_TYPES, *AUDIO_TYPES),
               {200: bodies.VadResponse}, ("UNSUPPORTED_MEDIA", *INFERENCE_ERRORS), MODEL),))]
    if not kind.streams:
        return routes
    vad = kind.answers == "segments"
    name, answer = ("VAD", bodies.VadStreamResponse) if vad else ("ASR", bodies.StreamTextResponse)
    streams = f"{prefix}/streams"
    return routes + [
        Route(streams, lambda d: StreamsResource(d, kind), (
            Op("post", f"Open a live {name} stream", None if vad else bodies.StreamOpenRequest,
               {201: bodies.StreamOpenResponse}, INFERENCE_ERRORS, MODEL),)),
        Route(f"{streams}/{{stream_id}}/audio", lambda d: StreamFeedResource(d, kind), (
            Op("post", "Send audio to a VAD stream: the segments it closed" if vad else "Send audio to a stream",
               AUDIO_TYPES, {200: answer}, STREAM_ERRORS, MODEL),)),
        Route(f"{streams}/{{stream_id}}/finish", lambda d: StreamFeedResource(d, kind, finish=True), (
            Op("post", "End a VAD stream: its last segments" if vad else "End a stream: its final text",
               responses={200: answer}, errors=STREAM_ERRORS, query=MODEL),)),
        Route(f"{streams}/{{stream_id}}", lambda d: StreamResource(d, kind), (
            Op("delete", f"Abort a{' VAD' if vad else ''} stream", responses={200: bodies.StreamClosedResponse},
               errors=("STREAM_NOT_FOUND",), query=MODEL),)),
    ]


def seed_routes() -> list[Route]:
    routes: dict[str, Route] = {route.path: route for route in LIFECYCLE}
    for kind in KINDS.values():
        for route in kind_routes(kind, KIND_ROUTES[kind.name]):
            routes.setdefault(route.path, route)
    return list(routes.values())


SEED = Adapter("seed", seed_routes(), SEED_SHAPE)
