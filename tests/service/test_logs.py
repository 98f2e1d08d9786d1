"""The service's log format (`service.logs`): text for people, JSON lines for a log collector."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.logs import UVICORN_LOGGERS, JsonFormatter, configure_logging


@pytest.fixture
def logging_state() -> Iterator[None]:
    """Leave the root and uvicorn loggers as the test found them."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    uvicorn = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in UVICORN_LOGGERS}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("service.access", logging.INFO, __file__, 1, message, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_holds_the_message_and_the_request_fields() -> None:
    line = json.loads(
        JsonFormatter().format(
            record(
                "%s %d", "abc", 200, request_id="abc", method="POST", path="/v1/detect", status=200, ms=12.3
            )
        )
    )
    assert line["message"] == "abc 200" and line["level"] == "INFO" and line["logger"] == "service.access"
    assert line["time"].endswith("+00:00") and "T" in line["time"]
    assert {k: line[k] for k in ("request_id", "method", "path", "status", "ms")} == {
        "request_id": "abc",
        "method": "POST",
        "path": "/v1/detect",
        "status": 200,
        "ms": 12.3,
    }
    assert "traceback" not in line


def test_a_json_line_keeps_the_traceback_and_only_the_listed_fields() -> None:
    line = json.loads(JsonFormatter().format(record("failed", exc=True, secret="x", path=Path("/a"))))
    assert "ValueError: boom" in line["traceback"] and "\n" not in json.dumps(line).strip()
    assert "secret" not in line and line["path"] == "/a"  # not JSON itself: written as text


@pytest.mark.usefixtures("logging_state")
def test_json_mode_installs_one_handler_however_often_it_is_configured(tmp_path: Path) -> None:
    root = logging.getLogger()
    kept = logging.FileHandler(tmp_path / "kept.log")
    root.addHandler(kept)
    root.addHandler(logging.StreamHandler())  # a plain stderr handler, as basicConfig adds
    configure_logging("warning", "json")
    configure_logging("info", "json")
    json_handlers = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(json_handlers) == 1 and kept in root.handlers and root.level == logging.INFO
    assert not [h for h in root.handlers if type(h) is logging.StreamHandler and h not in json_handlers]
    for name in UVICORN_LOGGERS:
        assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    kept.close()


@pytest.mark.usefixtures("logging_state")
def test_text_mode_leaves_configured_handlers_alone() -> None:
    root = logging.getLogger()
    before = root.handlers[:]
    root.addHandler(marker := logging.NullHandler())
    configure_logging("debug", "text")
    assert root.handlers == [*before, marker]
