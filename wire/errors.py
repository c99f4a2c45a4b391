"""Errors the supervisor raises to its callers; each carries a stable code.

The HTTP status for each code lives in `api.errors`: the supervisor knows nothing about HTTP.
"""

from __future__ import annotations

from typing import Any


class SupervisorError(Exception):
    """A failure a client can act on: `code` never changes, `details` says what to do."""

    def __init__(self, code: str, message: str, details: str = "", **context: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.context = context


def shown(value: str, limit: int = 64) -> str:
    """A client-supplied name as it may appear in a message: printable and bounded (it may be 10 kB of junk)."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "…"


def model_not_found(name: str, available: list[str]) -> SupervisorError:
    return SupervisorError(
        "MODEL_NOT_FOUND", "Model not found", f"The requested model '{shown(name)}' does not exist",
        available_models=available,
    )
