"""Request IDs, the access log and the last-resort 500, on a tiny app of their own."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.middleware import BodyLimitMiddleware, RequestIdMiddleware, request_id_from


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    def ok() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    @app.get("/boom")
    def boom() -> None:
        raise ZeroDivisionError("a bug")

    @app.get("/health/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    app.add_middleware(BodyLimitMiddleware, max_bytes=64)
    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(tiny_app(), raise_server_exceptions=True)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("trace:4bf92f3577b34da6.a3ce929d0e0e4736_x", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ("new\nline", False),
        ("", False),
        ("<script>", False),
    ],
)
def test_a_callers_plain_id_is_kept_and_any_other_replaced(sent: str, kept: bool) -> None:
    made = request_id_from([(b"X-Request-ID", sent.encode())])
    if kept:
        assert made == sent
    else:
        assert made != sent and len(made) == 32 and int(made, 16) >= 0


def test_without_a_callers_id_each_request_gets_a_new_one(client: TestClient) -> None:
    first, second = client.get("/ok"), client.get("/ok")
    assert first.status_code == second.status_code == 200
    ids = first.headers["x-request-id"], second.headers["x-request-id"]
    assert ids[0] != ids[1] and all(len(i) == 32 for i in ids)


def test_the_callers_id_comes_back(client: TestClient) -> None:
    response = client.get("/ok", headers={"X-Request-ID": "order-42"})
    assert response.headers["x-request-id"] == "order-42"


def test_an_unexpected_error_is_a_json_500_with_the_id_and_a_logged_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        response = client.get("/boom", headers={"X-Request-ID": "bug-7"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == "bug-7"
    assert "bug-7" in error["message"]
    assert response.headers["x-request-id"] == "bug-7"
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1 and "bug-7" in failed[0].getMessage() and "GET /boom" in failed[0].getMessage()
    assert failed[0].exc_info is not None and failed[0].exc_info[0] is ZeroDivisionError
    assert "a bug" not in response.text  # the traceback stays in the log, not in the answer
    assert client.get("/ok").status_code == 200


def test_each_request_has_one_access_line_and_probes_are_quiet(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.get("/ok", headers={"X-Request-ID": "line-1"})
        client.get("/health/ready", headers={"X-Request-ID": "probe-1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("line-1 GET /ok 200 ") and lines[0].endswith(" ms")


def test_the_body_limits_413_carries_the_id_in_header_and_body(client: TestClient) -> None:
    response = client.post("/echo", json={"text": "x" * 100}, headers={"X-Request-ID": "big-1"})
    assert response.status_code == 413
    assert response.headers["x-request-id"] == "big-1"
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is over the 64-byte limit",
        "request_id": "big-1",
    }
