"""The images a request to /v1/detect or /v1/recognize carries: multipart fields named `image`
(repeatable); one image as the whole request body (`curl --data-binary @house.jpg -H
'Content-Type: image/jpeg'`, `httpx.post(url, content=data)`), which is what a camera, a script or a
serverless function finds simplest to send; or a JSON body holding them in base64 (`{"image":
"<base64>"}` or `{"images": [...]}`), which is what a web page or a JSON-only client sends. The
declared type is not trusted: the bytes are sniffed when they are decoded (`service.imaging`)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Annotated, Any

from fastapi import Depends, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidBase64Error, MissingImageError, UnsupportedMediaTypeError
from service.imaging import ALLOWED_FORMATS
from service.schemas import ImagesJson

# Request bodies read as one image, besides any `image/...` type. No Content-Type at all is one too:
# `requests.post(url, data=data)` and `httpx.post(url, content=data)` send none.
RAW_MEDIA_TYPES = frozenset({"application/octet-stream", ""})
JSON_MEDIA_TYPE = "application/json"
SEND_AN_IMAGE = (
    "send each image as a multipart field named `image`, one image as the request body with "
    'Content-Type image/* or application/octet-stream, or JSON {"image": "<base64>"} or '
    '{"images": ["<base64>", ...]}'
)
URL_SAFE_TO_STANDARD = str.maketrans("-_", "+/")
NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=_\-\s]")


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


def decode_base64(text: str) -> bytes:
    """The bytes a base64 text holds: the standard or the URL-safe alphabet, padded or not, with
    line breaks or spaces anywhere (`base64` wraps its lines at 76), or a data URL
    (`data:image/png;base64,...`; its declared type is not trusted either).

    Raises ValueError saying what is wrong: a character outside the alphabet, a length no base64
    text has, a data URL that is not base64."""
    start = 0  # where the base64 starts in the text
    if text[:5].lower() == "data:":
        comma = text.find(",")
        if comma < 0:
            raise ValueError("a data URL without the comma before its data")
        if not text[:comma].lower().endswith(";base64"):
            raise ValueError("a data URL not in base64 (it must read data:<type>;base64,<data>)")
        start = comma + 1
    if bad := NOT_BASE64.search(text, start):
        raise ValueError(f"not base64: {bad.group()!r} at character {bad.start()}")
    text = text[start:]
    compact = "".join(text.split()).translate(URL_SAFE_TO_STANDARD).rstrip("=")
    if len(compact) % 4 == 1:
        raise ValueError(f"not base64: {len(compact)} characters, and no base64 text has that many")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 ({exc})") from None


def json_uploads(body: bytes) -> list[UploadFile]:
    """The images of a JSON body (`ImagesJson`) as uploads, in request order.

    Raises RequestValidationError (422) for a body that is not JSON or not of that shape, and
    InvalidBase64Error (400) naming the first image whose text is not base64."""
    try:
        parsed = ImagesJson.model_validate_json(body)
    except ValidationError as exc:
        # Only where and what: an error's `input` can be the whole body.
        errors = [{"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise RequestValidationError(errors) from None
    uploads = []
    for index, text in enumerate(parsed.texts()):
        try:
            uploads.append(body_upload(decode_base64(text)))
        except ValueError as exc:
            raise InvalidBase64Error(f"image {index}: {exc}") from None
    return uploads


async def uploaded_images(
    request: Request,
    image: Annotated[
        list[UploadFile] | None,
        File(description=f"one or more images ({', '.join(sorted(ALLOWED_FORMATS))})"),
    ] = None,
) -> list[UploadFile]:
    """The request's images in request order: its `image` fields, its body as one image, or the
    images of its JSON body.

    Raises MissingImageError (422) for a form without `image` fields, what `json_uploads` raises for
    a JSON body, and UnsupportedMediaTypeError (415) for any other body (text, or a form-encoded
    one: what `curl --data-binary` sends unless told a Content-Type)."""
    if image:
        return image
    content_type = request.headers.get("content-type")
    kind = media_type(content_type)
    if is_raw_image_body(content_type):
        return [body_upload(await request.body())]
    if kind == JSON_MEDIA_TYPE:
        # parsing and decoding a body of up to max_upload_bytes is CPU work: off the event loop
        return await run_in_threadpool(json_uploads, await request.body())
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
        "content": {
            "image/*": BINARY,
            "application/octet-stream": BINARY,
            JSON_MEDIA_TYPE: {"schema": ImagesJson.model_json_schema()},
        },
        "description": "multipart fields named `image`, one image as the whole body, or JSON with the "
        "images in base64",
    }
}
