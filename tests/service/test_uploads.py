"""One image as the request body, beside the multipart `image` fields: the same answers, clear errors."""

from __future__ import annotations

import base64
import io

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from service.uploads import decode_base64, is_raw_image_body, media_type
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
        ("application/xml", "application/xml"),
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
    assert '{"image": "<base64>"}' in error["message"]


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


# A JSON body: the images in base64.


@given(st.binary(max_size=300), st.sampled_from([0, 1, 2, 3]))
@settings(max_examples=200, deadline=None)
def test_decode_base64_reads_every_way_base64_is_written(data: bytes, way: int) -> None:
    if way == 0:  # standard, padded
        text = base64.b64encode(data).decode()
    elif way == 1:  # URL-safe, unpadded (JWT-style)
        text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    elif way == 2:  # wrapped at 76 columns, as `base64` and MIME write it
        text = base64.encodebytes(data).decode()
    else:  # a data URL, as a browser's FileReader.readAsDataURL gives
        text = "data:image/png;base64," + base64.b64encode(data).decode()
    assert decode_base64(text) == data


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("aGVsbG8*", "not base64: '\\*' at character 7"),
        ("data:image/png;base64,aGVs\nbG8é", "not base64: 'é' at character 30"),
        ("aGVsb", "5 characters"),
        ("aGVs=bG8=", "not base64"),
        ("data:image/png,aGVsbG8", "not in base64"),
        ("data:image/png;base64", "comma"),
    ],
)
def test_decode_base64_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode_base64(text)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def without_timing(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timing"} for r in results]


def test_images_in_json_read_as_the_same_images_sent_as_fields(client: TestClient) -> None:
    one, two = noise_png(seed=5), noise_png((90, 60), seed=6)
    for route in ("/v1/detect", "/v1/recognize"):
        as_fields = client.post(
            route, files=[("image", ("a.png", one, "image/png")), ("image", ("b.png", two, "image/png"))]
        )
        as_json = client.post(route, json={"images": [b64(one), "data:image/png;base64," + b64(two)]})
        assert as_json.status_code == as_fields.status_code == 200, as_json.text
        assert without_timing(as_json.json()["results"]) == without_timing(as_fields.json()["results"])
        alone = client.post(route, json={"image": b64(two)})
        assert alone.status_code == 200, alone.text
        assert without_timing(alone.json()["results"]) == [
            {**without_timing(as_fields.json()["results"])[1], "index": 0}
        ]


def test_a_data_urls_declared_type_is_not_trusted(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (90, 40), "white").save(buffer, "JPEG")
    response = client.post("/v1/recognize", json={"image": "data:image/png;base64," + b64(buffer.getvalue())})
    assert response.status_code == 200 and response.json()["results"][0]["width"] == 90
    assert 'digitserve_decode_seconds_count{format="JPEG"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"images": [b64(png()), "not*base64"]}, 400, "invalid_base64", "image 1: not base64"),
        ({"image": "data:image/png,%89PNG"}, 400, "invalid_base64", "image 0: a data URL not in base64"),
        ({"image": ""}, 400, "empty_image", "image 0"),
        ({"image": b64(b"plain text, not an image")}, 415, "not_an_image", "image 0"),
        ({"image": b64(png()[:60])}, 400, "corrupt_image", "image 0"),
        ({"image": b64(png()), "images": [b64(png())]}, 422, "invalid_request", "either `image`"),
        ({}, 422, "invalid_request", "either `image`"),
        ({"images": []}, 422, "invalid_request", "body.images"),
        ({"img": b64(png())}, 422, "invalid_request", "body.img"),
        ({"image": 5}, 422, "invalid_request", "body.image"),
    ],
)
def test_a_bad_json_body_says_what_is_wrong(
    client: TestClient, body: dict, status: int, code: str, says: str
) -> None:
    response = client.post("/v1/detect", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"], error


def test_a_body_that_is_not_json_is_422_and_does_not_echo_it(client: TestClient) -> None:
    secret = b64(png()) + "}"  # a truncated upload
    response = client.post("/v1/recognize", content=secret, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert "JSON" in response.json()["error"]["message"] and secret[:40] not in response.text


def test_json_images_keep_the_services_limits(start_client: StartClient) -> None:
    client = start_client(max_images_per_request=2, max_upload_bytes=4096)
    response = client.post("/v1/detect", json={"images": [b64(png())] * 3})
    assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_images"
    big = noise_png((34, 34))
    assert len(big) < 4096 < len(b64(big))  # the limit holds for the bytes sent, base64 and all
    response = client.post("/v1/detect", json={"image": b64(big)})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert client.post("/v1/detect", content=big, headers={"content-type": "image/png"}).status_code == 200


def test_json_images_need_the_api_key(start_client: StartClient) -> None:
    client = start_client(api_keys=frozenset({"secret"}))
    assert client.post("/v1/recognize", json={"image": b64(png())}).status_code == 401
    response = client.post("/v1/recognize", json={"image": b64(png())}, headers={"X-API-Key": "secret"})
    assert response.status_code == 200


def test_openapi_documents_the_json_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for route in ("/v1/detect", "/v1/recognize"):
        schema = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == {"image", "images"} and schema["additionalProperties"] is False
