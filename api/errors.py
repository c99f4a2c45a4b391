"""The error envelope for every failure: ours, Falcon's own, and anything unexpected."""

from __future__ import annotations

import logging

import falcon
import msgspec

from wire.bodies import ErrorBody
from api.oip_bodies import OipError
from api.openai_formats import OpenAIError, openai_error
from wire.errors import ErrorCode, SupervisorError

log = logging.getLogger(__name__)
OIP_PREFIX = "/v2/"
OPENAI_PREFIX = "/v1/"

HTTP_STATUS = {code.value: code.status for code in ErrorCode}   # the README's table is checked against it
# Falcon's own errors (unknown route, wrong method, ...) mapped onto our codes.
FALCON_CODES = {404: ErrorCode.ROUTE_NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                413: ErrorCode.PAYLOAD_TOO_LARGE, 415: ErrorCode.UNSUPPORTED_MEDIA, 401: ErrorCode.UNAUTHORIZED,
                403: ErrorCode.FORBIDDEN, 409: ErrorCode.CONFLICT}


def envelope(code: str, message: str, details: str, **context) -> dict:
    """The typed envelope plus context fields (such as `available_models`) the error carries."""
    body = ErrorBody(success=False, error=message, error_code=code, details=details)
    return msgspec.structs.asdict(body) | context


def error_body(req: falcon.Request, code: str, message: str, details: str, **context) -> dict | OipError | OpenAIError:
    """Our envelope, or on the Open Inference Protocol's routes its own `{"error": "..."}` shape, or on OpenAI's
    routes `{"error": {"message", "type", "param", "code"}}`."""
    if req.path.startswith(OIP_PREFIX):
        return OipError(error=f"{message}: {details}" if details else message)
    if req.path.startswith(OPENAI_PREFIX):
        return openai_error(HTTP_STATUS.get(code, 500), code, message, details)
    return envelope(code, message, details, **context)


def handle_supervisor_error(req: falcon.Request, resp: falcon.Response, exc: SupervisorError, params) -> None:
    resp.status = HTTP_STATUS.get(exc.code, 500)
    resp.media = error_body(req, exc.code, exc.message, exc.details, **exc.context)
    if exc.code in (ErrorCode.MODEL_NOT_READY, ErrorCode.OVERLOADED):
        resp.set_header("Retry-After", str(exc.context.get("retry_after_s", 5)))


def handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    resp.status = 500
    resp.media = error_body(req, ErrorCode.INTERNAL, "Internal server error",
                            "The server logged the cause; please report it")


def serialize_falcon_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    status = exc.status_code
    code = FALCON_CODES.get(status, ErrorCode.INVALID_REQUEST if 400 <= status < 500 else ErrorCode.INTERNAL)
    details = exc.description or ("No such route; see the README for the API" if status == 404 else "")
    if status == 405:
        details = f"{req.method} is not allowed on {req.path}"
    resp.content_type = falcon.MEDIA_JSON
    resp.media = error_body(req, code, exc.title or "Error", details)
