"""Pure ASGI middleware: request IDs, the access log and the last-resort 500; the request-body byte limit;
per-route request metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body, request_id_of
from service.telemetry import Telemetry


class _BodyTooLargeError(Exception):
    pass


log = logging.getLogger("service")
access_log = logging.getLogger("service.access")

# A caller's own ID is kept when it is short and plain (it ends up in logs and headers); else one is made.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
QUIET_ROUTES = ("/health/live", "/health/ready", "/metrics")  # probed every few seconds: logged at DEBUG


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is 1-128 of `A-Za-z0-9._:-`, else a fresh uuid4 hex."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CALLER_ID.fullmatch(text) else uuid.uuid4().hex
    return uuid.uuid4().hex


async def _send_error(
    send: Send, status: int, code: str, message: str, request_id: str | None, close: bool = False
) -> None:
    body = json.dumps(error_body(code, message, request_id)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_413(send: Send, limit: int, scope: Scope) -> None:
    message = f"the request body is over the {limit}-byte limit"
    await _send_error(send, 413, "payload_too_large", message, request_id_of(scope), close=True)


class RequestIdMiddleware:
    """Gives every HTTP request an ID (the caller's X-Request-ID, or a new one) that its response carries
    as X-Request-ID, its error body as `request_id` and its access-log line; turns an unexpected exception
    into a logged traceback and a 500 in the one error shape instead of a bare text 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        status, started, start = 500, False, time.perf_counter()

        async def tagged_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                tagged = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": tagged}
            await send(message)

        try:
            await self.app(scope, receive, tagged_send)
        except Exception:
            log.exception(
                "request %s %s %s failed",
                request_id,
                scope["method"],
                scope["path"],
                extra={"request_id": request_id, "method": scope["method"], "path": scope["path"]},
            )
            if started:
                raise  # the response is half sent: only the server can close the connection
            message = f"an unexpected error; quote request id {request_id} when reporting it"
            await _send_error(tagged_send, 500, "internal_error", message, request_id)
        finally:
            level = logging.DEBUG if scope["path"] in QUIET_ROUTES else logging.INFO
            ms = (time.perf_counter() - start) * 1000
            method, path = scope["method"], scope["path"]
            fields = dict(request_id=request_id, method=method, path=path, status=status, ms=round(ms, 1))
            access_log.log(level, "%s %s %s %d %.1f ms", request_id, method, path, status, ms, extra=fields)


class BodyLimitMiddleware:
    """413 before the body is read when Content-Length is over the limit; while streaming otherwise
    (chunked uploads): the read stops at the limit and the app's own response is replaced."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_413(send, self.max_bytes, scope)
            return
        seen, exceeded, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _send_413(send, self.max_bytes, scope)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLargeError:
            if not started:
                await _send_413(send, self.max_bytes, scope)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.telemetry.requests.labels(route=route, status=str(status)).inc()
            self.telemetry.latency.labels(route=route).observe(time.perf_counter() - start)
