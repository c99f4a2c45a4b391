"""Readiness, one rule for every probe (`/readyz`, `/v2/health/ready`): every `required` model is loaded."""

from __future__ import annotations

from flows.ports import SupervisorAPI
from wire.errors import ErrorCode, SupervisorError


def check_ready(supervisor: SupervisorAPI, message: str) -> None:
    """Raise MODEL_NOT_READY (503, Retry-After) naming the required models that are not loaded yet."""
    missing = supervisor.missing_required()
    if missing:
        raise SupervisorError(ErrorCode.MODEL_NOT_READY, message, f"waiting for: {', '.join(missing)}",
                              missing_models=missing, retry_after_s=5)


def check_live(supervisor: SupervisorAPI) -> None:
    if not supervisor.is_alive():
        raise SupervisorError(ErrorCode.INTERNAL, "Server is not live", "the supervisor loop stopped")
