"""`create_app(supervisor)`: the Falcon WSGI app, with dependencies injected and one error envelope."""

from __future__ import annotations

from importlib.metadata import version

import falcon
import falcon.media
from falcon.media.multipart import MultipartFormHandler, MultipartParseOptions

from api.auth import ApiKeyMiddleware, server_keys
from api.gate import ThreadGate
from api.observability import MetricsResource, ModelReadyResource, ReadyResource, RequestLogMiddleware
from api.oip import (InferResource, ModelConfigResource, ModelMetadataResource,
                     ModelReadyResource as V2ModelReadyResource,
                     RepositoryIndexResource, RepositoryLoadResource, RepositoryUnloadResource, ServerLiveResource,
                     ServerMetadataResource, ServerReadyResource)
from api.openai_audio import ModelsResource, TranscriptionsResource, TranslationsResource
from api.openapi import OpenApiResource
from api.errors import handle_supervisor_error, handle_unexpected, serialize_falcon_error
from api.media import MsgspecJSONHandler
from api.inference import (PunctuationResource, StreamFeedResource, StreamResource, StreamsResource,
                           TranscribeResource, VadResource)
from api.resources import (HealthResource, LoadStatusResource, ModelInfoResource, ModelLoadResource,
                           ModelUnloadResource, RegistryResource)
from flows.ports import SupervisorAPI
from wire.errors import SupervisorError
from supervisor.kinds import KINDS


class App(falcon.App):
    """Every route that answers GET answers HEAD the same, without the body (Falcon leaves it out for HEAD)."""

    def add_route(self, uri_template: str, resource: object, **kwargs) -> None:
        if hasattr(resource, "on_get") and not hasattr(resource, "on_head"):
            resource.on_head = resource.on_get
        super().add_route(uri_template, resource, **kwargs)


def create_app(supervisor: SupervisorAPI, api_key: str | None = None) -> falcon.App:
    """`api_key` (the CLI's --api-key) is an admin key, beside [server] api_keys; with no key at all, none is
    asked for."""
    settings = supervisor.settings
    keys = server_keys(settings.api_keys, api_key)
    middleware = [RequestLogMiddleware(), *([ApiKeyMiddleware(keys)] if keys else [])]
    gate = ThreadGate(settings.http_threads - settings.control_threads)
    app = App(middleware=middleware)
    json_handler = MsgspecJSONHandler()
    multipart = MultipartParseOptions()
    multipart.max_body_part_buffer_size = int(settings.max_audio_mb * 1024 * 1024)  # Falcon's default: 1 MiB
    app.req_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler,
                                                            falcon.MEDIA_MULTIPART: MultipartFormHandler(multipart)})
    app.resp_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler})
    app.req_options.strip_url_path_trailing_slash = True

    app.add_route("/healthz", HealthResource(supervisor))
    app.add_route("/readyz", ReadyResource(supervisor))
    app.add_route("/metrics", MetricsResource(supervisor))
    app.add_route("/openapi.json", OpenApiResource(version("funasr-supervisor"), tuple(supervisor.snapshot.models)))
    app.add_route("/model/{model_type}/ready", ModelReadyResource(supervisor))
    app.add_route("/model/info", ModelInfoResource(supervisor))
    app.add_route("/model/load", ModelLoadResource(supervisor, gate))
    app.add_route("/model/load/{load_id}", LoadStatusResource(supervisor))
    app.add_route("/model/unload/{model_type}", ModelUnloadResource(supervisor, gate))
    app.add_route("/model/registry/{model_type}", RegistryResource(supervisor))
    for path, resource in kind_routes(supervisor, gate).items():
        app.add_route(path, resource)
    add_open_inference_routes(app, supervisor, gate)
    app.add_route("/v1/audio/transcriptions", TranscriptionsResource(supervisor, gate))
    app.add_route("/v1/audio/translations", TranslationsResource())
    app.add_route("/v1/models", ModelsResource(supervisor))

    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(SupervisorError, handle_supervisor_error)
    app.set_error_serializer(serialize_falcon_error)
    return app


def kind_routes(supervisor: SupervisorAPI, gate: ThreadGate) -> dict[str, object]:
    """Each kind's routes, from what it answers and whether it streams (`supervisor.kinds`); kinds that share a
    route (both ASR kinds transcribe at /asr/transcribe) share its resource, which picks the model."""
    answers = {"text": ("", PunctuationResource), "transcript": ("/transcribe", TranscribeResource),
               "segments": ("", VadResource)}
    routes: dict[str, object] = {}
    for kind in KINDS.values():
        suffix, resource = answers[kind.answers]
        routes.setdefault(kind.route + suffix, resource(supervisor, gate))
        if kind.streams:
            streams = f"{kind.route}/streams"
            routes[streams] = StreamsResource(supervisor, gate, kind)
            routes[f"{streams}/{{stream_id}}"] = StreamResource(supervisor, kind)
            routes[f"{streams}/{{stream_id}}/audio"] = StreamFeedResource(supervisor, gate, kind)
            routes[f"{streams}/{{stream_id}}/finish"] = StreamFeedResource(supervisor, gate, kind, True)
    return routes


def add_open_inference_routes(app: falcon.App, supervisor: SupervisorAPI, gate: ThreadGate) -> None:
    """KServe v2 / Triton: server and model metadata, health, infer, and the model repository."""
    app.add_route("/v2", ServerMetadataResource())
    app.add_route("/v2/health/live", ServerLiveResource(supervisor))
    app.add_route("/v2/health/ready", ServerReadyResource(supervisor))
    for model in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
        app.add_route(model, ModelMetadataResource(supervisor))
        app.add_route(f"{model}/ready", V2ModelReadyResource(supervisor))
        app.add_route(f"{model}/config", ModelConfigResource(supervisor))
        app.add_route(f"{model}/infer", InferResource(supervisor, gate))
    app.add_route("/v2/repository/index", RepositoryIndexResource(supervisor))
    app.add_route("/v2/repository/models/{model_name}/load", RepositoryLoadResource(supervisor, gate))
    app.add_route("/v2/repository/models/{model_name}/unload", RepositoryUnloadResource(supervisor, gate))
