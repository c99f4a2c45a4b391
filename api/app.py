"""`create_app(supervisor)`: the Falcon WSGI app, its routes made from the one route table (`api/routes.py`), each
protocol's errors in its own shape."""

from __future__ import annotations

import falcon
import falcon.media
from falcon.media.multipart import MultipartFormHandler, MultipartParseOptions

from api.common.auth import ApiKeyMiddleware, server_keys
from api.common.deps import Deps
from api.common.errors import ErrorAnswers
from api.common.media import MsgspecJSONHandler
from api.common.observability import RequestLogMiddleware
from api.routes import ADAPTERS
from flows.ports import SupervisorAPI


class App(falcon.App):
    """Every route that answers GET answers HEAD the same, without the body (Falcon leaves it out for HEAD)."""

    def add_route(self, uri_template: str, resource: object, **kwargs) -> None:
        if hasattr(resource, "on_get") and not hasattr(resource, "on_head"):
            setattr(resource, "on_head", getattr(resource, "on_get"))
        super().add_route(uri_template, resource, **kwargs)


def create_app(supervisor: SupervisorAPI, api_key: str | None = None) -> falcon.App:
    """`api_key` (the CLI's --api-key) is an admin key, beside [server] api_keys; with no key at all, none is
    asked for."""
    deps = Deps(supervisor)
    keys = server_keys(deps.settings.api_keys, api_key)
    app = App(middleware=[RequestLogMiddleware(), *([ApiKeyMiddleware(keys)] if keys else [])])
    json_handler = MsgspecJSONHandler()
    multipart = MultipartParseOptions()
    multipart.max_body_part_buffer_size = deps.limits.audio_bytes  # Falcon's default: 1 MiB
    app.req_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler,
                                                            falcon.MEDIA_MULTIPART: MultipartFormHandler(multipart)})
    app.resp_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler})
    app.req_options.strip_url_path_trailing_slash = True

    deps.adapters = ADAPTERS
    for adapter in ADAPTERS:
        for route in adapter.routes:
            app.add_route(route.path, route.make(deps))
    ErrorAnswers([adapter.errors for adapter in ADAPTERS]).install(app)
    return app
