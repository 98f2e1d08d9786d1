"""The images a request to /v1/detect or /v1/recognize carries: multipart fields named `image`
(repeatable), or one image as the whole request body (`curl --data-binary @house.jpg -H
'Content-Type: image/jpeg'`, `httpx.post(url, content=data)`), which is what a camera, a script or a
serverless function finds simplest to send. The body's declared type is not trusted: the bytes are
sniffed when they are decoded (`service.imaging`)."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import Depends, File, Request, UploadFile

from service.errors import MissingImageError, UnsupportedMediaTypeError
from service.imaging import ALLOWED_FORMATS

# Request bodies read as one image, besides any `image/...` type. No Content-Type at all is one too:
# `requests.post(url, data=data)` and `httpx.post(url, content=data)` send none.
RAW_MEDIA_TYPES = frozenset({"application/octet-stream", ""})
SEND_AN_IMAGE = (
    "send each image as a multipart field named `image`, or one image as the request body with "
    "Content-Type image/* or application/octet-stream"
)


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without its parameters ('' when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_raw_image_body(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is read as one image (image/*, octet-stream, or none)."""
    kind = media_type(content_type)
    return kind in RAW_MEDIA_TYPES or kind.startswith("image/")


def body_upload(data: bytes) -> UploadFile:
    """A raw request body as the one upload a multipart request would have carried (only its bytes
    are read: the declared type is not trusted)."""
    return UploadFile(io.BytesIO(data), size=len(data))


async def uploaded_images(
    request: Request,
    image: Annotated[
        list[UploadFile] | None,
        File(description=f"one or more images ({', '.join(sorted(ALLOWED_FORMATS))})"),
    ] = None,
) -> list[UploadFile]:
    """The request's images in request order: its `image` fields, or its body as one image.

    Raises MissingImageError (422) for a form without `image` fields and UnsupportedMediaTypeError
    (415) for any other body (JSON, text, or a form-encoded one: what `curl --data-binary` sends
    unless told a Content-Type)."""
    if image:
        return image
    content_type = request.headers.get("content-type")
    kind = media_type(content_type)
    if is_raw_image_body(content_type):
        return [body_upload(await request.body())]
    if kind == "application/x-www-form-urlencoded":
        raise UnsupportedMediaTypeError(
            f"a form-encoded body is not an image (curl --data-binary sends one unless given "
            f"-H 'Content-Type: image/jpeg'): {SEND_AN_IMAGE}"
        )
    if kind == "multipart/form-data":
        raise MissingImageError(f"no field named `image`: {SEND_AN_IMAGE}")
    raise UnsupportedMediaTypeError(f"a body of Content-Type {kind} is not an image: {SEND_AN_IMAGE}")


UploadsDep = Annotated[list[UploadFile], Depends(uploaded_images)]

BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
# What /v1/detect and /v1/recognize document besides their multipart form (FastAPI merges it into
# the operation's requestBody).
RAW_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "content": {"image/*": BINARY, "application/octet-stream": BINARY},
        "description": "multipart fields named `image`, or one image as the whole body",
    }
}
