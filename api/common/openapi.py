"""`GET /openapi.json`: an OpenAPI 3.1 document made from the route table and the same msgspec Structs that
validate requests (`msgspec.json.schema_components`), so the document cannot drift from the code."""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import falcon
import msgspec

from api.common.auth import needs_admin
from api.common.errors import HTTP_STATUS
from wire.errors import error_code

if TYPE_CHECKING:   # the table's rows are made from resources, this one among them
    from api.common.deps import Deps
    from api.common.routing import Adapter, Op

REF = "#/components/schemas/{name}"
JSON = "application/json"
BINARY = {"schema": {"type": "string", "format": "binary"}}


def as_tuple(types: Any) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def struct_types(adapters: list[Adapter]) -> list[type]:
    """Every Struct (or list of one) a route takes or answers, and each protocol's error body."""
    found: list[type] = [adapter.errors.schema for adapter in adapters]
    for adapter in adapters:
        for route in adapter.routes:
            for op in route.ops:
                found += [t for ts in op.responses.values() for t in as_tuple(ts) if not isinstance(t, str)]
                found += [op.body] if op.body is not None and not isinstance(op.body, tuple) else []
    return list(dict.fromkeys(found))


def binary_body(op: Op) -> bool:
    """The Open Inference Protocol's binary tensor extension: JSON header then the tensors' bytes, both ways."""
    return getattr(op.body, "__name__", "") == "InferRequest"


def request_body(op: Op, schemas: dict) -> dict | None:
    if op.body is None:
        return None
    if isinstance(op.body, tuple):  # raw bytes: audio
        return {"required": True, "content": {t: BINARY for t in op.body}}
    content = {JSON: {"schema": schemas[op.body]}}
    if binary_body(op):
        content["application/octet-stream"] = BINARY
    required = any(f.required for f in msgspec.structs.fields(op.body))  # a body of optional fields may be absent
    return {"required": required, "content": content}


def response(types: Any, schemas: dict) -> dict:
    if isinstance(types, str):  # not JSON: a media type of its own
        schema = {"type": "string"} if types.startswith("text/") else {"type": "object"}
        return {"description": "success", "content": {types: {"schema": schema}}}
    options = [schemas[t] for t in as_tuple(types)]
    return {"description": "success",
            "content": {JSON: {"schema": options[0] if len(options) == 1 else {"anyOf": options}}}}


def path_schema(name: str, models: tuple[str, ...]) -> dict:
    """A v2 model name is one of the models configured at start (the fuzz then reaches them); anything else is
    a string."""
    return {"type": "string", "enum": list(models)} if name == "{model_name}" else {"type": "string"}


def operation(path: str, op: Op, error_schema: dict, schemas: dict, models: tuple[str, ...]) -> dict:
    operation_id = f"{op.method}_{path.strip('/').replace('/', '_').replace('.', '_')}"
    described: dict = {"summary": op.summary, "operationId": operation_id,
                       "responses": {str(status): response(t, schemas) for status, t in op.responses.items()}}
    params = [{"name": name.strip("{}"), "in": "path", "required": True, "schema": path_schema(name, models)}
              for name in path.split("/") if name.startswith("{")]
    params += [{"name": name, "in": "query", "required": False, "schema": {"type": kind}} for name, kind in op.query]
    if params:
        described["parameters"] = params
    if (body := request_body(op, schemas)) is not None:
        described["requestBody"] = body
    by_status: dict[int, list[str]] = {}
    for code in ("UNAUTHORIZED", *(("FORBIDDEN",) if needs_admin(op.method.upper(), path) else ()), *op.errors):
        by_status.setdefault(error_code(code).status, []).append(code)   # a code that is not one fails here
    for status, codes in by_status.items():
        described["responses"][str(status)] = {"description": "error: " + ", ".join(codes),
                                               "content": {JSON: {"schema": error_schema}}}
    if binary_body(op):  # outputs asked for as binary come after the JSON header
        described["responses"]["200"]["content"]["application/octet-stream"] = BINARY
    return described


def openapi_document(version: str, models: tuple[str, ...], adapters: list[Adapter]) -> dict:
    types = struct_types(adapters)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schemas = dict(zip(types, refs))
    paths: dict[str, dict] = {}
    for adapter in adapters:
        for route in adapter.routes:
            for op in route.ops:
                paths.setdefault(route.path, {})[op.method] = operation(route.path, op, schemas[adapter.errors.schema],
                                                                        schemas, models)
    return {
        "openapi": "3.1.0",
        "info": {"title": "funasr-supervisor", "version": version,
                 "description": "Process-per-model lifecycle server for FunASR models. Error codes: "
                                + ", ".join(f"{c} ({s})" for c, s in HTTP_STATUS.items())},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


class OpenApiResource:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.document: dict | None = None   # made at the first request: the table is complete by then

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.document is None:
            self.document = openapi_document(version("funasr-supervisor"), tuple(self.deps.supervisor.snapshot.models),
                                             self.deps.adapters)
        resp.media = self.document
