"""Fuzz the whole HTTP API with schemathesis against our own /openapi.json: no 500, no off-schema response."""

from __future__ import annotations

import falcon.testing
import hypothesis
import schemathesis
from openapi_spec_validator import validate
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from api.app import create_app
from api.routes import ADAPTERS
from supervisor.config import load_config
from tests.fake_facade import FakeSupervisor

EXAMPLES_PER_OPERATION = 40
executed: list[str] = []


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


REGISTRY = "/model/registry/{model_type}"


def fuzz_operations(sup, registry: bool) -> list:
    """The registry's operations (which change what a supervisor serves, on disk too) or all the others."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(sup))
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if (op.path == REGISTRY) == registry]


def test_every_operation_conforms_to_the_openapi_document(sup):
    """Hypothesis-generated requests for each operation, through the real app and real model processes."""
    operations = fuzz_operations(sup, registry=False)
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {   # schemathesis leaves out the document
        op for op in table_operations() if not op.endswith(REGISTRY) and op != "GET /openapi.json"}
    fuzz_each(operations)
    print(f"fuzz: {len(executed)} generated requests over {len(operations)} operations")
    assert any(call.startswith("POST /v2/models/") for call in executed)


def test_the_registry_operations_conform_on_a_supervisor_of_their_own(start_supervisor, tmp_path):
    """Registering random models must not touch the shared supervisor's cache: a fresh one (nothing is loaded)."""
    sup = start_supervisor(load_config("demo"), tmp_path)
    operations = fuzz_operations(sup, registry=True)
    assert {op.method.upper() for op in operations} == {"PUT", "DELETE"}
    fuzz_each(operations)
    assert any(call.startswith("PUT /model/registry/") for call in executed)


def fuzz_each(operations: list) -> None:
    for operation in operations:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck), database=None)
        def fuzz(case) -> None:
            executed.append(f"{case.method} {case.path}")
            case.call_and_validate(checks=CHECKS)
        fuzz()


def table_operations() -> set[str]:
    return {f"{op.method.upper()} {route.path}" for adapter in ADAPTERS for route in adapter.routes for op in route.ops}


def test_openapi_document_is_valid_and_lists_every_route(client):
    """The document is made from the route table, and so are the app's routes: every operation in one is in the
    other, and each is routed (asked of an app on the facade's fake: no 405, and no "No such route")."""
    document = client.simulate_get("/openapi.json").json
    validate(document)
    routes = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    assert routes == table_operations()
    assert {"GET /healthz", "POST /model/load", "DELETE /model/unload/{model_type}", "POST /asr/transcribe",
            "POST /v2/models/{model_name}/infer", "POST /v1/audio/transcriptions"} <= routes
    fake = falcon.testing.TestClient(create_app(FakeSupervisor()))
    for operation in routes:
        method, path = operation.split(" ")
        for name, value in (("{model_name}", "vad"), ("{model_type}", "vad"), ("{model_version}", "1"),
                            ("{load_id}", "x"), ("{stream_id}", "x")):
            path = path.replace(name, value)
        answer = fake.simulate_request(method, path)
        assert answer.status_code != 405 and "No such route" not in answer.text, operation
    described = document["info"]["description"]
    for code in ("INVALID_REQUEST", "MODEL_NOT_FOUND", "STREAM_LOST", "INSUFFICIENT_MEMORY", "INTERNAL"):
        assert code in described
    print(f"fuzz cases executed so far in this run: {len(executed)}")
