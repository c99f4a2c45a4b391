"""The error answer for every failure (ours, Falcon's own, anything unexpected), in the shape of the protocol the
request spoke: the seed's envelope unless an adapter registered its own shape for its URL prefix."""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple

import falcon
import msgspec

from wire.bodies import ErrorBody
from wire.errors import ErrorCode, SupervisorError

log = logging.getLogger(__name__)

HTTP_STATUS = {code.value: code.status for code in ErrorCode}   # the README's table is checked against it
# Falcon's own errors (unknown route, wrong method, ...) mapped onto our codes.
FALCON_CODES = {404: ErrorCode.ROUTE_NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                413: ErrorCode.PAYLOAD_TOO_LARGE, 415: ErrorCode.UNSUPPORTED_MEDIA, 401: ErrorCode.UNAUTHORIZED,
                403: ErrorCode.FORBIDDEN, 409: ErrorCode.CONFLICT}


def envelope(code: str, message: str, details: str, **context: Any) -> dict:
    """The typed envelope plus context fields (such as `available_models`) the error carries."""
    body = ErrorBody(success=False, error=message, error_code=code, details=details)
    return msgspec.structs.asdict(body) | context


class ErrorShape(NamedTuple):
    """How one protocol writes an error: for requests under `prefix` (the path itself or below it; "" for every
    other path), `render(status, code, message, details, context)` is the body, of type `schema` (what the OpenAPI
    document says)."""

    prefix: str
    render: Callable[[int, str, str, str, dict], Any]
    schema: type

    def covers(self, path: str) -> bool:
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")


SEED_SHAPE = ErrorShape("", lambda status, code, message, details, context: envelope(code, message, details,
                                                                                       **context), ErrorBody)


class ErrorAnswers:
    """Falcon's error handlers and serializer, answering in the shape registered for the request's path."""

    def __init__(self, shapes: list[ErrorShape]) -> None:
        self.shapes = sorted(shapes, key=lambda shape: len(shape.prefix), reverse=True)   # the longest prefix wins

    def install(self, app: falcon.App) -> None:
        app.add_error_handler(Exception, self.unexpected)
        app.add_error_handler(SupervisorError, self.refused)
        app.set_error_serializer(self.falcon_error)

    def body(self, req: falcon.Request, code: str, message: str, details: str, context: dict | None = None) -> Any:
        shape = next((s for s in self.shapes if s.covers(req.path)), SEED_SHAPE)
        return shape.render(HTTP_STATUS.get(code, 500), code, message, details, context or {})

    def refused(self, req: falcon.Request, resp: falcon.Response, exc: SupervisorError, params: dict) -> None:
        resp.status = HTTP_STATUS.get(exc.code, 500)
        resp.media = self.body(req, exc.code, exc.message, exc.details, exc.context)
        if exc.code in (ErrorCode.MODEL_NOT_READY, ErrorCode.OVERLOADED):
            resp.set_header("Retry-After", str(exc.context.get("retry_after_s", 5)))

    def unexpected(self, req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
        log.exception("unhandled error on %s %s", req.method, req.path)
        resp.status = 500
        resp.media = self.body(req, ErrorCode.INTERNAL, "Internal server error",
                               "The server logged the cause; please report it")

    def falcon_error(self, req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
        status = exc.status_code
        code = FALCON_CODES.get(status, ErrorCode.INVALID_REQUEST if 400 <= status < 500 else ErrorCode.INTERNAL)
        details = exc.description or ("No such route; see the README for the API" if status == 404 else "")
        if status == 405:
            details = f"{req.method} is not allowed on {req.path}"
        resp.content_type = falcon.MEDIA_JSON
        resp.media = self.body(req, code, exc.title or "Error", details)
