"""Small things every HTTP adapter does to a request or an answer."""

from __future__ import annotations

import falcon


def model_param(req: falcon.Request) -> str | None:
    """`?model=<name>`: which model of the route's kind; absent, the kind's default model."""
    return req.get_param("model") or None


def mark_cold_start(resp: falcon.Response, cold_start: bool) -> None:
    if cold_start:
        resp.set_header("X-Cold-Start", "1")


def server_timing(resp: falcon.Response, model_ms: float) -> None:
    """W3C Server-Timing: the time spent inside the model, so a client can tell it from transport cost."""
    resp.set_header("Server-Timing", f"model;dur={model_ms:.3f}")


def best_text(text: str, punctuated: str | None) -> str:
    """What a client that takes one text gets: the punctuated one where punctuation ran."""
    return punctuated if punctuated is not None else text
