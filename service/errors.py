"""Domain errors and their one mapping to HTTP: status, machine-readable code, words a caller can act on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Scope

from service.imaging import (
    CorruptImageError,
    EmptyImageError,
    ExtremeAspectRatioError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedFormatError,
)


class ServiceError(Exception):
    """An error with an HTTP status; `headers` are added to the response."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class NotReadyError(ServiceError):
    status, code = 503, "not_ready"


class QueueFullError(ServiceError):
    status, code = 503, "overloaded"


class ModelOverloadedError(ServiceError):
    """The accelerator ran out of memory; memory was freed and the next request may succeed."""

    status, code = 503, "out_of_memory"


class TooManyImagesError(ServiceError):
    status, code = 422, "too_many_images"


class MissingImageError(ServiceError):
    """A form with no `image` field: the same code as FastAPI's own validation errors."""

    status, code = 422, "invalid_request"


class UnsupportedMediaTypeError(ServiceError):
    """A request body that is neither a form with images nor an image."""

    status, code = 415, "unsupported_media_type"


class InvalidBase64Error(ServiceError):
    """An image in a JSON body whose text is not base64 (nor a base64 data URL)."""

    status, code = 400, "invalid_base64"


class UnauthorizedError(ServiceError):
    status, code = 401, "unauthorized"


class RequestTimeoutError(ServiceError):
    status, code = 503, "timeout"


IMAGE_ERROR_STATUS: dict[type[ImageError], tuple[int, str]] = {
    EmptyImageError: (400, "empty_image"),
    CorruptImageError: (400, "corrupt_image"),
    NotAnImageError: (415, "not_an_image"),
    UnsupportedFormatError: (415, "unsupported_format"),
    ImageTooLargeError: (413, "image_too_large"),
    ExtremeAspectRatioError: (422, "extreme_aspect_ratio"),
}


class UploadError(ServiceError):
    """An ImageError for the upload at `index` (0-based, in request order)."""

    def __init__(self, index: int, error: ImageError) -> None:
        super().__init__(f"image {index}: {error}")
        self.status, self.code = IMAGE_ERROR_STATUS.get(type(error), (400, "bad_image"))


def error_body(code: str, message: str, request_id: str | None = None) -> dict[str, dict[str, str]]:
    """The one error shape; `request_id` (the X-Request-ID the response carries) is left out when unknown."""
    detail = {"code": code, "message": message}
    if request_id is not None:
        detail["request_id"] = request_id
    return {"error": detail}


def request_id_of(scope: Scope) -> str | None:
    """The ID `RequestIdMiddleware` gave this request (None outside it)."""
    return scope.get("state", {}).get("request_id")


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in one shape: {"error": {"code", "message"}}."""

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse(
            error_body(exc.code, exc.message, request_id_of(request.scope)),
            status_code=exc.status,
            headers=exc.headers,
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        body = error_body("invalid_request", _describe_validation(exc), request_id_of(request.scope))
        return JSONResponse(body, status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail), request_id_of(request.scope)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
