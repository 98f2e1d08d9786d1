"""schemathesis against the app's own OpenAPI document: no 5xx, responses (bodies, headers) match what is
documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.config import Settings


@pytest.fixture(scope="module")
def api_schema(tiny_checkpoint: Path) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(Settings(checkpoint=tiny_checkpoint, device="cpu", max_upload_bytes=256 * 1024))
    with TestClient(app):
        assert app.state.service.loaded.wait(60)
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,  # X-Model-Version on every reading
]


@pytest.mark.slow
def test_api_conforms_and_never_5xx(api_schema: schemathesis.BaseSchema) -> None:
    tested = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        run()
        tested.append(operation.label)
    assert {"POST /v1/detect", "POST /v1/recognize", "GET /v1/model", "GET /health/ready"} <= set(tested)
