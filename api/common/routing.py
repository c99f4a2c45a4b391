"""The route table's rows. Each adapter lists its routes once (path, how its resource is made, and per method the
summary, body, responses and error codes); `api/routes.py` joins them, and that one table makes the Falcon
routes, the OpenAPI document and the fuzz test's list of operations."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from api.common.deps import Deps
from api.common.errors import ErrorShape


class Op(NamedTuple):
    method: str                        # lower case, as OpenAPI writes it
    summary: str
    body: Any = None                   # a Struct (JSON), a tuple of media types (raw bytes), or None
    responses: dict[int, Any] = {}     # status -> Struct, or a tuple of Structs (any of them)
    errors: tuple[str, ...] = ()       # error codes it may answer, beyond the auth ones
    query: tuple[tuple[str, str], ...] = ()   # (name, JSON type) of its query parameters


class Route(NamedTuple):
    path: str
    make: Callable[[Deps], object]     # the Falcon resource, from the app's dependencies
    ops: tuple[Op, ...]


class Adapter(NamedTuple):
    """One protocol over HTTP: its routes and how it writes an error."""

    name: str
    routes: list[Route]
    errors: ErrorShape
