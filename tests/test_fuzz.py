"""Fuzz the whole HTTP API with schemathesis against our own /openapi.json: no 500, no off-schema response."""

from __future__ import annotations

import hypothesis
import schemathesis
from openapi_spec_validator import validate
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from api.app import create_app

EXAMPLES_PER_OPERATION = 40
executed: list[str] = []


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_conforms_to_the_openapi_document(sup):
    """Hypothesis-generated requests for each operation, through the real app and real model processes."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(sup))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck), database=None)
        def fuzz(case) -> None:
            executed.append(f"{case.method} {case.path}")
            case.call_and_validate(checks=CHECKS)
        fuzz()
    print(f"fuzz: {len(executed)} generated requests over {len(operations)} operations")
    assert any(call.startswith("POST /v2/models/") for call in executed)


def test_openapi_document_is_valid_and_lists_every_route(client):
    document = client.simulate_get("/openapi.json").json
    validate(document)
    routes = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    assert routes >= {"GET /healthz", "GET /model/info", "POST /model/info", "POST /model/load",
                      "GET /model/load/{load_id}", "DELETE /model/unload/{model_type}", "POST /punctuation",
                      "POST /asr/streams", "POST /asr/streams/{stream_id}/audio",
                      "POST /asr/streams/{stream_id}/finish", "DELETE /asr/streams/{stream_id}",
                      "POST /asr/transcribe", "GET /openapi.json", "POST /vad", "POST /vad/streams",
                      "POST /vad/streams/{stream_id}/audio", "POST /vad/streams/{stream_id}/finish",
                      "DELETE /vad/streams/{stream_id}", "GET /v2", "GET /v2/health/live", "GET /v2/health/ready",
                      "GET /v2/models/{model_name}", "GET /v2/models/{model_name}/ready",
                      "POST /v2/models/{model_name}/infer",
                      "POST /v2/models/{model_name}/versions/{model_version}/infer",
                      "POST /v2/repository/index", "POST /v2/repository/models/{model_name}/load",
                      "POST /v2/repository/models/{model_name}/unload"}
    described = document["info"]["description"]
    for code in ("INVALID_REQUEST", "MODEL_NOT_FOUND", "STREAM_LOST", "INSUFFICIENT_MEMORY", "INTERNAL"):
        assert code in described
    print(f"fuzz cases executed so far in this run: {len(executed)}")
