"""One image as the request body, beside the multipart `image` fields: the same answers, clear errors."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.uploads import is_raw_image_body, media_type
from tests.service.conftest import StartClient, noise_png, png


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ""),
        ("image/PNG", "image/png"),
        ("image/jpeg; charset=binary", "image/jpeg"),
        (" multipart/form-data ; boundary=x", "multipart/form-data"),
    ],
)
def test_media_type_drops_parameters_and_case(header: str | None, expected: str) -> None:
    assert media_type(header) == expected


@pytest.mark.parametrize(
    ("header", "raw"),
    [
        ("image/jpeg", True),
        ("image/heic", True),
        ("application/octet-stream", True),
        (None, True),
        ("multipart/form-data; boundary=b", False),
        ("application/x-www-form-urlencoded", False),
        ("application/json", False),
        ("text/plain", False),
    ],
)
def test_which_bodies_are_read_as_one_image(header: str | None, raw: bool) -> None:
    assert is_raw_image_body(header) is raw


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", None])
def test_an_image_sent_as_the_body_reads_as_the_same_image_sent_as_a_field(
    client: TestClient, content_type: str | None
) -> None:
    image = noise_png(seed=5)
    headers = {"content-type": content_type} if content_type else {}
    for route in ("/v1/detect", "/v1/recognize"):
        as_field = client.post(route, files=[("image", ("x.png", image, "image/png"))])
        as_body = client.post(route, content=image, headers=headers)
        assert as_body.status_code == as_field.status_code == 200, as_body.text
        field, body = as_field.json()["results"], as_body.json()["results"]
        assert len(body) == 1
        for result in (field[0], body[0]):
            del result["timing"]
        assert body == field


def test_the_bodys_declared_type_is_not_trusted(client: TestClient) -> None:
    """A JPEG declared as a PNG is read as the JPEG it is; the metrics count it as one."""
    buffer = io.BytesIO()
    Image.new("RGB", (90, 40), "white").save(buffer, "JPEG")
    response = client.post("/v1/recognize", content=buffer.getvalue(), headers={"content-type": "image/png"})
    assert response.status_code == 200 and response.json()["results"][0]["width"] == 90
    assert 'digitserve_decode_seconds_count{format="JPEG"} 1.0' in client.get("/metrics").text


def test_a_phones_heic_sent_as_the_body_is_read_upright(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (120, 50), "white").save(buffer, "HEIF", exif=exif.tobytes())
    response = client.post("/v1/detect", content=buffer.getvalue(), headers={"content-type": "image/heic"})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert (result["width"], result["height"]) == (50, 120)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "empty_image"),
        (png()[:60], 400, "corrupt_image"),
        (b"plain text, not an image", 415, "not_an_image"),
    ],
)
def test_a_bad_body_gets_the_same_errors_as_a_bad_field(
    client: TestClient, body: bytes, status: int, code: str
) -> None:
    response = client.post("/v1/recognize", content=body, headers={"content-type": "image/png"})
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert "image 0" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content_type", "hint"),
    [
        ("application/x-www-form-urlencoded", "curl --data-binary"),
        ("application/json", "application/json"),
        ("text/plain; charset=utf-8", "text/plain"),
    ],
)
def test_a_body_that_is_no_image_is_415_saying_what_to_send(
    client: TestClient, content_type: str, hint: str
) -> None:
    response = client.post("/v1/detect", content=png(), headers={"content-type": content_type})
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and hint in error["message"]
    assert "field named `image`" in error["message"] and "image/*" in error["message"]


def test_a_form_without_image_fields_is_422_saying_what_to_send(client: TestClient) -> None:
    response = client.post("/v1/recognize", files=[("photo", ("x.png", png(), "image/png"))])
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert "field named `image`" in response.json()["error"]["message"]


def test_a_body_over_the_byte_limit_is_413(start_client: StartClient) -> None:
    client = start_client(max_upload_bytes=4096)
    big = noise_png((200, 200))
    assert len(big) > 4096
    response = client.post("/v1/detect", content=big, headers={"content-type": "image/png"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: chunked transfer
        for start in range(0, len(big), 1024):
            yield big[start : start + 1024]

    response = client.post("/v1/detect", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413


def test_a_body_needs_the_api_key_as_a_field_does(start_client: StartClient) -> None:
    client = start_client(api_keys=frozenset({"secret"}))
    headers = {"content-type": "image/png"}
    assert client.post("/v1/recognize", content=png(), headers=headers).status_code == 401
    response = client.post("/v1/recognize", content=png(), headers={**headers, "X-API-Key": "secret"})
    assert response.status_code == 200


def test_openapi_documents_the_body_beside_the_form(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for route in ("/v1/detect", "/v1/recognize"):
        content = spec["paths"][route]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(content)
        assert content["image/*"]["schema"] == {"type": "string", "format": "binary"}
