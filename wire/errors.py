"""Errors the supervisor raises to its callers; each carries a stable code, one of `ErrorCode`.

Each code names the HTTP status it answers with (the API reads it; the supervisor never looks at it), so a code
without a status cannot exist, and an unknown code is an error where it is raised, not a silent 500.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    """Every code a client may see in `error_code`, with its HTTP status."""

    status: int

    def __new__(cls, code: str, status: int) -> "ErrorCode":
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        return member

    def __str__(self) -> str:
        return self.value

    INVALID_REQUEST = "INVALID_REQUEST", 400
    UNAUTHORIZED = "UNAUTHORIZED", 401
    FORBIDDEN = "FORBIDDEN", 403
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND", 404
    LOAD_NOT_FOUND = "LOAD_NOT_FOUND", 404
    STREAM_NOT_FOUND = "STREAM_NOT_FOUND", 404
    ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND", 404
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", 405
    CONFLICT = "CONFLICT", 409
    STREAM_LOST = "STREAM_LOST", 410
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE", 413
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA", 415
    INSUFFICIENT_MEMORY = "INSUFFICIENT_MEMORY", 507
    LOAD_FAILED = "LOAD_FAILED", 500
    MODEL_CRASHED = "MODEL_CRASHED", 502
    MODEL_NOT_READY = "MODEL_NOT_READY", 503
    LOAD_TIMEOUT = "LOAD_TIMEOUT", 504
    INFERENCE_TIMEOUT = "INFERENCE_TIMEOUT", 504
    OVERLOADED = "OVERLOADED", 503
    INTERNAL = "INTERNAL", 500


def error_code(value: str) -> ErrorCode:
    """The code named `value`; ValueError for a name that is not one."""
    try:
        return ErrorCode[value]
    except KeyError:
        raise ValueError(f"{value!r} is not an ErrorCode") from None


class SupervisorError(Exception):
    """A failure a client can act on: `code` never changes, `details` says what to do."""

    def __init__(self, code: ErrorCode, message: str, details: str = "", **context: Any) -> None:
        super().__init__(message)
        self.code = error_code(code)   # a code that is not one of ErrorCode's raises here, where it is made
        self.message = message
        self.details = details
        self.context = context


def shown(value: str, limit: int = 64) -> str:
    """A client-supplied name as it may appear in a message: printable and bounded (it may be 10 kB of junk)."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "…"


def model_not_found(name: str, available: list[str]) -> SupervisorError:
    return SupervisorError(
        ErrorCode.MODEL_NOT_FOUND, "Model not found", f"The requested model '{shown(name)}' does not exist",
        available_models=available,
    )
