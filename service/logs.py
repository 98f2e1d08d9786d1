"""The service's log: plain text lines for people, or one JSON object a line for a log collector
(`DIGITSERVE_LOG_FORMAT=json`).

A JSON line holds `time` (UTC, ISO 8601 with milliseconds), `level`, `logger` and `message`, the fields
a call passes in `extra` that are listed in `FIELDS` (the access log's `request_id`, `method`, `path`,
`status`, `ms`), and `traceback` where an exception is logged. In JSON mode uvicorn's own loggers write
through the same handler, so every line of the process is JSON.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("request_id", "method", "path", "status", "ms")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

LogFormat = Literal["text", "json"]
_MARK = "digitserve_json"  # set on the handler configure_logging adds


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (see the module's docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Text: `logging.basicConfig` with `TEXT_FORMAT` (nothing changes where the root logger already
    has handlers). JSON: the root logger's plain stderr/stdout handlers, and any an earlier call
    added, give way to one JSON handler on stderr (other handlers, such as files, stay), and uvicorn's
    loggers write through it."""
    if log_format == "text":
        logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
        return
    root = logging.getLogger()
    for old in [h for h in root.handlers if type(h) is logging.StreamHandler or getattr(h, _MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
