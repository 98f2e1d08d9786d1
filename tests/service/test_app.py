"""Contract tests: every route and error code, on a started app with a tiny real checkpoint."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel

from models.alternatives import alternative_readings
from models.assembly import AssembledNumber, AssemblyParams, Detection, assemble_number
from models.boxes import xywh_to_xyxy
from models.confirm import confirming_scores
from models.host import cpu_info
from models.reread import Findings
from models.verifier import load_verifier, number_features
from service.app import create_app
from service.config import Settings
from service.imaging import ALLOWED_FORMATS
from service.schemas import ConfirmResponse, RecognizeResponse
from tests.service.conftest import StartClient, noise_png, png


def files(*images: bytes, field: str = "image") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


def test_live_and_ready(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["device"] == "cpu"


def test_detect_returns_coco_boxes_per_image(client: TestClient) -> None:
    response = client.post("/v1/detect", files=files(noise_png(), png((40, 90))))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["index"], r["width"], r["height"]) for r in results] == [(0, 126, 56), (1, 40, 90)]
    for det in results[0]["detections"]:
        assert det["category_id"] == det["digit"] + 1 and 0 <= det["score"] <= 1
        x, y, w, h = det["bbox"]
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0 and x + w <= 126.01 and y + h <= 56.01
    assert results[0]["timing"]["total_ms"] >= results[0]["timing"]["inference_ms"] > 0


def test_min_score_filters_detections(client: TestClient) -> None:
    response = client.post("/v1/detect?min_score=0.99", files=files(noise_png()))
    assert all(d["score"] >= 0.99 for d in response.json()["results"][0]["detections"])


def test_recognize_uses_the_shared_assembly_rule(start_client: StartClient) -> None:
    client = start_client(score_threshold=0.0)
    image = noise_png(seed=3)
    detections = client.post("/v1/detect", files=files(image)).json()["results"][0]["detections"]
    expected = assemble_number(
        [Detection(xywh_to_xyxy(d["bbox"]), d["digit"], d["score"]) for d in detections],
        AssemblyParams(score_threshold=0.0),
    )
    result = client.post("/v1/recognize", files=files(image)).json()["results"][0]
    assert result["text"] == expected.text and result["number"] == expected.value
    assert len(result["digits"]) == len(expected.digits) > 0


def test_model_info_tells_a_client_what_a_request_may_hold(start_client: StartClient) -> None:
    limits = start_client(max_images_per_request=3, max_upload_bytes=4096).get("/v1/model").json()["limits"]
    assert limits == {
        "max_upload_bytes": 4096,
        "max_pixels": 25_000_000,
        "max_aspect_ratio": 50.0,
        "max_images_per_request": 3,
        "reduce_to_px": 1536,
        "request_timeout_s": 30.0,
        "formats": sorted(
            {"BMP", "GIF", "HEIF", "JPEG", "PNG", "TIFF", "WEBP"} | (ALLOWED_FORMATS & {"AVIF"})
        ),
    }


def test_recognize_without_confident_digits_is_minus_one(client: TestClient) -> None:
    result = client.post("/v1/recognize", files=files(png())).json()["results"][0]
    assert result["number"] == -1 and result["text"] == "" and result["digits"] == []


def test_model_info(client: TestClient, tiny_checkpoint: Path) -> None:
    info = client.get("/v1/model").json()
    doc = json.loads((tiny_checkpoint / "checkpoint.json").read_text())
    assert info["arch"] == "fasterrcnn_resnet18_fpn" and info["weights_sha256"] == doc["weights"]["sha256"]
    assert info["classes"][0] == "background" and len(info["classes"]) == 11
    assert (
        info["input_size"] == {"min_size": 64, "max_size": 256}
        and info["thresholds"]["score_threshold"] == 0.6
    )
    assert info["training_metrics"] == {"map": 0.0}
    assert info["zoom"]["below_px"] == 0.0  # the checkpoint's: off
    assert info["int8"] is None and info["int8_parts"] == []  # no int8 ranges in it: float32
    assert info["host"] == cpu_info().describe() and ", int8: " in info["host"]


def test_zoom_setting_overrides_the_checkpoint(start_client: StartClient) -> None:
    client = start_client(zoom_below_px=40)
    assert client.get("/v1/model").json()["zoom"]["below_px"] == 40.0
    assert client.app.state.service.predictor.zoom.enabled  # type: ignore[attr-defined]


def test_search_tiles_setting_overrides_the_checkpoint(start_client: StartClient) -> None:
    client = start_client(search_tiles=2)
    tiles = client.get("/v1/model").json()["zoom"]["search_tiles"]
    assert tiles == 2 and isinstance(tiles, int)  # a count, not 2.0
    assert client.app.state.service.predictor.zoom.search_tiles == 2  # type: ignore[attr-defined]


def test_search_located_setting_overrides_the_checkpoint(start_client: StartClient) -> None:
    client = start_client(
        search_tiles=3, search_located=True, search_below_p=0.8, search_tiles_max=4, search_near=0.1
    )
    zoom = client.get("/v1/model").json()["zoom"]
    assert zoom["search_located"] is True and zoom["search_below_p"] == 0.8
    assert zoom["search_tiles_max"] == 4 and isinstance(zoom["search_tiles_max"], int)
    predictor = client.app.state.service.predictor  # type: ignore[attr-defined]
    assert predictor.zoom.search_located and predictor.zoom.search_below_p == 0.8
    assert predictor.zoom.search_tiles_max == 4 and predictor.zoom.search_near == zoom["search_near"] == 0.1


def test_balance_smoothing_and_stretching_are_on_and_sharpening_off_by_default_and_the_settings_turn_them(
    start_client: StartClient,
) -> None:
    default = start_client().get("/v1/model").json()
    assert default["grain"] == {"threshold": 7.0, "per_sigma": 0.1, "max_radius": 1.0}
    assert default["focus"] == {"gate": 0.0, "radius": 1.5, "percent": 250, "threshold": 2}
    assert default["levels"] == {"gate": 64.0, "target": 224.0, "max_gain": 8.0}
    assert default["balance"] == {"gate": 3.0, "full": 2.0, "max_gain": 8.0}
    client = start_client(grain_threshold=0.0, sharpen_gate=0.6, levels_gate=0.0, balance_gate=0.0)
    info = client.get("/v1/model").json()
    assert info["grain"]["threshold"] == 0.0 and info["focus"]["gate"] == 0.6
    assert info["levels"]["gate"] == 0.0 and info["balance"]["gate"] == 0.0
    predictor = client.app.state.service.predictor  # type: ignore[attr-defined]
    assert not predictor.grain.on and predictor.focus.on and not predictor.levels.on
    assert not predictor.balance.on
    assert start_client(balance_gate=5.0).get("/v1/model").json()["balance"]["gate"] == 5.0


def test_narrow_and_squat_digits_are_read_again_by_default_and_settings_turn_it(
    start_client: StartClient,
) -> None:
    assert start_client().get("/v1/model").json()["widen"] == {
        "gate": 0.85,
        "squat_gate": 1.25,
        "min_score": 0.3,
        "rounds": 2,
        "max_factor": 3.0,
    }
    client = start_client(widen_gate=0.0, squat_gate=0.0)
    assert client.get("/v1/model").json()["widen"]["gate"] == 0.0
    assert not client.app.state.service.predictor.widen.on  # type: ignore[attr-defined]
    assert start_client(squat_gate=1.5).get("/v1/model").json()["widen"]["squat_gate"] == 1.5


def test_side_look_setting_overrides_the_checkpoint(start_client: StartClient) -> None:
    client = start_client(side_look=0.75)
    assert client.get("/v1/model").json()["zoom"]["side_look"] == 0.75
    assert client.app.state.service.predictor.zoom.side_look == 0.75  # type: ignore[attr-defined]


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    client.post("/v1/detect", files=files(png()))
    client.post("/v1/detect", files=files(b"not an image"))
    text = client.get("/metrics").text
    assert 'digitserve_requests_total{route="/v1/detect",status="200"} 1.0' in text
    assert 'digitserve_requests_total{route="/v1/detect",status="415"} 1.0' in text
    assert "digitserve_batch_size_count" in text and "digitserve_inference_seconds_count" in text
    assert "digitserve_queue_depth 0.0" in text


def test_metrics_time_decoding_by_format(client: TestClient) -> None:
    heic = io.BytesIO()
    Image.new("RGB", (64, 32), "white").save(heic, "HEIF")
    client.post("/v1/detect", files=files(png(), png()))
    client.post("/v1/recognize", files=[("image", ("x.heic", heic.getvalue(), "image/heic"))])
    client.post("/v1/detect", files=files(b"not an image"))  # refused: nothing decoded
    text = client.get("/metrics").text
    assert 'digitserve_decode_seconds_count{format="PNG"} 2.0' in text
    assert 'digitserve_decode_seconds_count{format="HEIF"} 1.0' in text
    assert text.count("digitserve_decode_seconds_count{") == 2


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "empty_image"),
        (png()[:60], 400, "corrupt_image"),
        (b"GIF89a-not-really", 400, "corrupt_image"),
        (b"plain text, not an image", 415, "not_an_image"),
        (b"P6\n4 4\n255\n" + bytes(48), 415, "unsupported_format"),
        (png((2000, 20)), 422, "extreme_aspect_ratio"),
    ],
)
def test_bad_images_get_clear_errors(client: TestClient, payload: bytes, status: int, code: str) -> None:
    response = client.post("/v1/detect", files=files(png(), payload))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and "image 1" in response.json()["error"]["message"]


def test_pixel_limit_is_413(start_client: StartClient) -> None:
    client = start_client(max_pixels=1000)
    response = client.post("/v1/recognize", files=files(png((100, 20))))
    assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large"


def test_aspect_ratio_limit_is_a_setting(start_client: StartClient) -> None:
    client = start_client(max_aspect_ratio=2.0)
    response = client.post("/v1/recognize", files=files(png((100, 20))))
    assert response.status_code == 422 and response.json()["error"]["code"] == "extreme_aspect_ratio"
    assert client.post("/v1/recognize", files=files(png((40, 20)))).status_code == 200


def test_body_over_byte_limit_is_413_from_content_length(start_client: StartClient) -> None:
    client = start_client(max_upload_bytes=2048)
    big = noise_png((200, 200))
    response = client.post("/v1/detect", files=files(big))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_streamed_body_over_limit_is_413(start_client: StartClient) -> None:
    client = start_client(max_upload_bytes=4096)

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(20):
            yield b"x" * 1024

    response = client.post(
        "/v1/detect", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413


def test_wrong_field_name_is_422_in_the_error_shape(client: TestClient) -> None:
    response = client.post("/v1/detect", files=files(png(), field="file"))
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert "image" in response.json()["error"]["message"]


def test_too_many_images_is_422(start_client: StartClient) -> None:
    client = start_client(max_images_per_request=2)
    response = client.post("/v1/detect", files=files(png(), png(), png()))
    assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_images"


def test_exif_rotated_upload_reports_upright_size(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (120, 50), "white").save(buffer, "JPEG", exif=exif)
    result = client.post("/v1/detect", files=[("image", ("x.jpg", buffer.getvalue(), "image/jpeg"))]).json()
    assert (result["results"][0]["width"], result["results"][0]["height"]) == (50, 120)


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("HEIF", "image/heic"),
        pytest.param(
            "AVIF",
            "image/avif",
            marks=pytest.mark.skipif("AVIF" not in ALLOWED_FORMATS, reason="no AVIF here"),
        ),
    ],
)
def test_phone_formats_are_read_upright(client: TestClient, fmt: str, mime: str) -> None:
    """A phone's HEIC (or an AVIF), turned by its orientation: read, and its size reported upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (120, 50), "white").save(buffer, fmt, exif=exif.tobytes())
    upload = [("image", (f"x.{fmt.lower()}", buffer.getvalue(), mime))]
    for route in ("/v1/detect", "/v1/recognize"):
        response = client.post(route, files=upload)
        assert response.status_code == 200, response.text
        result = response.json()["results"][0]
        assert (result["width"], result["height"]) == (50, 120)
    damaged = [("image", (f"x.{fmt.lower()}", buffer.getvalue()[:-40], mime))]
    response = client.post("/v1/recognize", files=damaged)
    assert response.status_code == 400 and response.json()["error"]["code"] == "corrupt_image"


def test_api_keys_guard_v1_but_not_health(start_client: StartClient) -> None:
    client = start_client(api_keys=frozenset({"secret"}))
    assert client.post("/v1/detect", files=files(png())).status_code == 401
    assert client.get("/v1/model", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/v1/model", headers={"X-API-Key": "secret"}).status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_cors_off_by_default_and_on_when_configured(start_client: StartClient) -> None:
    headers = {"Origin": "http://example.test"}
    assert "access-control-allow-origin" not in start_client().get("/health/live", headers=headers).headers
    allowed = start_client(cors_origins=("http://example.test",)).get("/health/live", headers=headers)
    assert allowed.headers["access-control-allow-origin"] == "http://example.test"
    exposed = allowed.headers["access-control-expose-headers"].lower().split(", ")
    assert {"x-request-id", "retry-after", "x-model-version"} <= set(exposed)  # a page's script may read them


@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_bad_checkpoint_keeps_process_live_and_not_ready(
    tmp_path: Path, tiny_checkpoint: Path, start_client: StartClient, damage: str
) -> None:
    folder = tmp_path / "ckpt"
    if damage == "tampered":
        folder.mkdir()
        (folder / "checkpoint.json").write_text((tiny_checkpoint / "checkpoint.json").read_text())
        weights = bytearray((tiny_checkpoint / "weights.safetensors").read_bytes())
        weights[-10] ^= 0xFF
        (folder / "weights.safetensors").write_bytes(bytes(weights))
    client = start_client(checkpoint=folder)
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "failed"
    assert ("missing" if damage == "missing" else "sha256") in ready.json()["reason"]
    response = client.post("/v1/recognize", files=files(png()))
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
    assert client.get("/v1/model").status_code == 503


def fail_first_call(client: TestClient, error: Exception) -> None:
    """The served model raises `error` on its next call, then answers as before."""
    predictor = client.app.state.service.predictor  # type: ignore[attr-defined]
    real_model = predictor.model
    calls = {"n": 0}

    def flaky(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:  # the model's own signature
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return real_model(images)

    predictor.model = flaky


def test_the_queue_knows_the_models_pace_from_the_warm_up(client: TestClient) -> None:
    batcher = client.app.state.service.batcher  # type: ignore[attr-defined]
    assert batcher.seconds_per_item is not None and batcher.seconds_per_item > 0  # before any request


def test_gpu_out_of_memory_answers_503_then_recovers(client: TestClient) -> None:
    fail_first_call(client, torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)"))
    first = client.post("/v1/detect", files=files(png()))
    assert first.status_code == 503 and first.json()["error"]["code"] == "out_of_memory"
    assert first.headers["Retry-After"] == "1"
    assert client.post("/v1/detect", files=files(png())).status_code == 200


def test_a_model_error_is_a_json_500_counted_and_the_model_serves_on(client: TestClient) -> None:
    fail_first_call(client, RuntimeError("an op the model could not run (simulated)"))
    failed = client.post("/v1/recognize", files=files(png()), headers={"X-Request-ID": "broken-1"})
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal_error"
    assert failed.json()["error"]["request_id"] == failed.headers["x-request-id"] == "broken-1"
    assert client.post("/v1/recognize", files=files(png())).status_code == 200
    assert 'digitserve_requests_total{route="/v1/recognize",status="500"} 1.0' in client.get("/metrics").text


def test_error_bodies_carry_the_responses_request_id(client: TestClient) -> None:
    for response in (
        client.post("/v1/detect", files=files(b"plain text")),  # a ServiceError
        client.post("/v1/detect", files=files(png(), field="file")),  # request validation
        client.get("/v1/nowhere"),  # starlette's 404
    ):
        assert response.status_code in (404, 415, 422), response.text
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
        assert len(response.headers["x-request-id"]) == 32


def test_a_request_the_model_answers_too_late_is_a_503_and_the_model_serves_on(
    start_client: StartClient,
) -> None:
    # 1 s: the stuck call outlasts it, and the next one has room on a loaded machine (0.2 s did not)
    client = start_client(request_timeout_s=1.0)
    service = client.app.state.service  # type: ignore[attr-defined]
    real_model = service.predictor.model
    release = threading.Event()
    calls = {"n": 0}

    def stuck_once(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:  # the model's own signature
        calls["n"] += 1
        if calls["n"] == 1:
            assert release.wait(30), "the test never released the model"
        return real_model(images)

    service.predictor.model = stuck_once
    late = client.post("/v1/recognize", files=files(png()))
    assert late.status_code == 503 and late.json()["error"]["code"] == "timeout"
    assert late.headers["Retry-After"] == "5"
    release.set()  # the abandoned batch finishes; its answer goes nowhere and the worker serves on
    served = client.post("/v1/recognize", files=files(png()))
    assert served.status_code == 200 and served.json()["results"][0]["number"] == -1
    assert calls["n"] >= 2 and service.batcher.pending == 0


def test_a_large_photo_is_read_reduced_and_its_boxes_come_back_in_its_own_pixels(
    start_client: StartClient,
) -> None:
    client = start_client(reduce_to_px=64)  # 256 x 128 is read at a quarter: 64 x 32
    predictor = client.app.state.service.predictor  # type: ignore[attr-defined]
    seen: list[tuple[int, ...]] = []

    def one_digit(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:  # the model's own signature
        seen.extend(tuple(image.shape) for image in images)
        box = torch.tensor([[2.0, 3.0, 6.0, 11.0]])  # xyxy in the pixels the model was given
        return [{"boxes": box, "labels": torch.tensor([5]), "scores": torch.tensor([0.99])} for _ in images]

    predictor.model = one_digit
    result = client.post("/v1/detect", files=files(png((256, 128)))).json()["results"][0]
    assert seen and set(seen) == {(3, 32, 64)}
    assert (result["width"], result["height"]) == (256, 128)
    assert [(d["bbox"], d["digit"]) for d in result["detections"]] == [([8.0, 12.0, 16.0, 32.0], 4)]
    read = client.post("/v1/recognize", files=files(png((256, 128)))).json()["results"][0]
    assert read["number"] == 4 and read["digits"][0]["bbox"] == [8.0, 12.0, 16.0, 32.0]
    seen.clear()
    client.post("/v1/detect", files=files(png((120, 60))))  # under twice 64: read whole
    assert set(seen) == {(3, 60, 120)}


def test_cuda_without_gpu_fails_startup(tiny_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    app = create_app(Settings(checkpoint=tiny_checkpoint, device="cuda"))
    with pytest.raises(RuntimeError, match="no CUDA GPU"), TestClient(app):
        pass


def test_auto_without_gpu_says_loudly_which_cpu_serves(
    start_client: StartClient, caplog: pytest.LogCaptureFixture
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with caplog.at_level("WARNING", logger="service"):
        client = start_client(device="auto")
    assert client.get("/v1/model").json()["device"] == "cpu"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("NO CUDA GPU FOUND" in w and cpu_info().describe() in w for w in warnings)


def test_draining_refuses_new_work(client: TestClient) -> None:
    client.app.state.service.drain()  # type: ignore[attr-defined]
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert client.post("/v1/detect", files=files(png())).status_code == 503
    assert client.get("/health/live").status_code == 200


def test_openapi_documents_routes_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/detect",
        "/v1/recognize",
        "/v1/confirm",
        "/v1/model",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in spec["paths"], path
    detect = spec["paths"]["/v1/detect"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "422", "500", "503"} <= set(detect)
    error = spec["components"]["schemas"]["ErrorDetail"]["properties"]
    assert {"code", "message", "request_id"} <= set(error)
    assert client.get("/docs").status_code == 200


def test_assemble_rereads_detections_with_other_thresholds(client: TestClient) -> None:
    detections = [
        {"bbox": [40, 0, 10, 20], "category_id": 4, "digit": 3, "score": 0.9},
        {"bbox": [10, 0, 10, 20], "category_id": 2, "digit": 1, "score": 0.5},
        {"bbox": [11, 1, 10, 20], "category_id": 8, "digit": 7, "score": 0.45},
    ]
    default = client.post("/v1/assemble", json={"detections": detections}).json()
    assert default["number"] == 3 and default["thresholds"]["score_threshold"] == 0.6
    lower = client.post("/v1/assemble", json={"detections": detections, "score_threshold": 0.4}).json()
    assert lower["text"] == "13" and [d["digit"] for d in lower["digits"]] == [1, 3]
    no_dedup = client.post(
        "/v1/assemble",
        json={
            "detections": detections,
            "score_threshold": 0.4,
            "iou_threshold": 0,
            "center_distance_ratio": 0,
        },
    ).json()
    assert len(no_dedup["text"]) == 3
    bad = client.post("/v1/assemble", json={"detections": detections, "score_threshold": 2})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    small = [*detections[:1], {"bbox": [55, 10, 10, 8], "category_id": 2, "digit": 1, "score": 0.8}]
    assert client.post("/v1/assemble", json={"detections": small}).json()["text"] == "31"
    ruled = client.post("/v1/assemble", json={"detections": small, "height_ratio": 1.6}).json()
    assert ruled["text"] == "3" and ruled["thresholds"]["height_ratio"] == 1.6
    for wrong in (0.5, -1, 20):
        refused = client.post("/v1/assemble", json={"detections": small, "height_ratio": wrong})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"


def test_assemble_reads_a_column_top_to_bottom_unless_told_otherwise(client: TestClient) -> None:
    column = [  # 7 over 2 over 5, each a little left of the one above: left to right they read 527
        {"bbox": [14, 0, 10, 20], "category_id": 8, "digit": 7, "score": 0.9},
        {"bbox": [12, 25, 10, 20], "category_id": 3, "digit": 2, "score": 0.9},
        {"bbox": [10, 50, 10, 20], "category_id": 6, "digit": 5, "score": 0.9},
    ]
    served = client.post("/v1/assemble", json={"detections": column}).json()
    assert served["text"] == "725" and [d["digit"] for d in served["digits"]] == [7, 2, 5]
    assert served["thresholds"]["read_columns"] is True
    flat = client.post("/v1/assemble", json={"detections": column, "read_columns": False}).json()
    assert flat["text"] == "527" and flat["thresholds"]["read_columns"] is False
    refused = client.post("/v1/assemble", json={"detections": column, "read_columns": "sideways"})
    assert refused.status_code == 422


@pytest.mark.parametrize(
    "bad",
    [
        {"bbox": [], "category_id": 1, "digit": 0, "score": 0.5},
        {"bbox": [0, 0, -5, 10], "category_id": 1, "digit": 0, "score": 0.5},
        {"bbox": [0, 0, 5, 10], "category_id": 3, "digit": 0, "score": 0.5},
        {"bbox": [0, 0, 5, 10], "category_id": 1, "digit": 0, "score": 1.5},
    ],
)
def test_assemble_rejects_malformed_detections_with_422(client: TestClient, bad: dict) -> None:
    response = client.post("/v1/assemble", json={"detections": [bad]})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_recognize_estimates_p_correct_with_the_verifier_fitted_on_the_pipeline(
    start_client: StartClient, tiny_checkpoint_with_verifier: Path
) -> None:
    client = start_client(checkpoint=tiny_checkpoint_with_verifier, score_threshold=0.0)
    image = noise_png(seed=3)
    found = client.post("/v1/detect", files=files(image)).json()["results"][0]
    as_detections = [
        [Detection(xywh_to_xyxy(d["bbox"]), d["digit"], d["score"]) for d in found[key]]
        for key in ("sites", "detections")
    ]
    sites, detections = as_detections
    features = number_features(assemble_number(sites, AssemblyParams(score_threshold=0.0)), sites, detections)
    verifier = load_verifier(tiny_checkpoint_with_verifier)
    assert features is not None and verifier is not None
    result = client.post("/v1/recognize", files=files(image)).json()["results"][0]
    assert result["p_correct"] == pytest.approx(float(verifier[0].p_correct(features)), abs=1e-3)
    metrics = client.get("/metrics").text
    assert "digitserve_p_correct_count 1.0" in metrics  # watched for drift
    body = {"detections": found["sites"], "boxes": found["detections"]}
    again = client.post("/v1/assemble", json=body).json()  # what the page does
    assert again["text"] == result["text"] and again["p_correct"] == pytest.approx(
        result["p_correct"], abs=1e-3
    )
    assert client.post("/v1/assemble", json={**body, "score_threshold": 0.1}).json()["p_correct"] is None
    flat = client.post("/v1/assemble", json={**body, "read_columns": False}).json()  # order only: it holds
    assert flat["p_correct"] == pytest.approx(result["p_correct"], abs=1e-3)
    assert client.post("/v1/assemble", json={"detections": found["sites"]}).json()["p_correct"] is None
    info = client.get("/v1/model").json()["verifier"]
    assert info == {"fitted_on": {"split": "valid", "images": 3}, "metrics": {"auc": 0.7}}
    predictor = client.app.state.service.predictor  # type: ignore[attr-defined]
    assert predictor.p_correct(assemble_number([]), Findings([], [])) is None  # no digit read


def test_p_correct_is_null_where_the_verifier_was_fitted_on_another_pipeline(
    start_client: StartClient, tiny_checkpoint_with_verifier: Path
) -> None:
    client = start_client(checkpoint=tiny_checkpoint_with_verifier, score_threshold=0.1)
    result = client.post("/v1/recognize", files=files(noise_png(seed=3))).json()["results"][0]
    assert result["p_correct"] is None and client.get("/v1/model").json()["verifier"] is None
    assert "digitserve_p_correct_count 0.0" in client.get("/metrics").text


def read_by_detect(
    client: TestClient, image: bytes, score_threshold: float
) -> tuple[dict, AssembledNumber, list[Detection], list[Detection]]:
    """/v1/detect's answer for `image`, and the number its sites make at `score_threshold` with the
    sites and detections it is read from, as the models' detections."""
    found = client.post("/v1/detect", files=files(image)).json()["results"][0]
    sites, detections = (
        [Detection(xywh_to_xyxy(d["bbox"]), d["digit"], d["score"]) for d in found[key]]
        for key in ("sites", "detections")
    )
    return found, assemble_number(sites, AssemblyParams(score_threshold=score_threshold)), sites, detections


def test_recognize_offers_the_readings_one_edit_away_when_asked(start_client: StartClient) -> None:
    client = start_client(score_threshold=0.125)  # the random model's scores: ~0.12-0.13
    image = noise_png(seed=3)
    found, number, sites, detections = read_by_detect(client, image, 0.125)
    expected = alternative_readings(number, sites, detections)
    assert len(expected) >= 2  # the random model reads 6s: drops and digits left out
    plain = client.post("/v1/recognize", files=files(image)).json()["results"][0]
    assert plain["alternatives"] == [] and plain["text"] == number.text
    first = client.post("/v1/recognize?alternatives=1", files=files(image)).json()["results"][0]
    asked = client.post("/v1/recognize?alternatives=10", files=files(image)).json()["results"][0]
    offered = asked["alternatives"]
    assert first["alternatives"] == offered[:1]
    assert [(a["text"], a["edit"]) for a in offered] == [(e.number.text, e.edit) for e in expected]
    assert [a["score"] for a in offered] == pytest.approx([e.score for e in expected], abs=1e-4)
    for alt in offered:
        assert alt["number"] == int(alt["text"]) and [d["digit"] for d in alt["digits"]] == [
            int(c) for c in alt["text"]
        ]
    # /v1/assemble offers the same from /v1/detect's answer, without the image
    body = {"detections": found["sites"], "boxes": found["detections"], "alternatives": 10}
    assert client.post("/v1/assemble", json=body).json()["alternatives"] == offered
    for too_many in ("11", "-1", "two"):
        refused = client.post(f"/v1/recognize?alternatives={too_many}", files=files(image))
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"


def test_confirm_says_whether_each_image_shows_the_numbers_asked_about(start_client: StartClient) -> None:
    client = start_client(score_threshold=0.125)  # the random model's scores: ~0.12-0.13
    image = noise_png(seed=3)
    found, number, sites, detections = read_by_detect(client, image, 0.125)
    scores = confirming_scores(number, sites, detections)
    alternatives = {n: score for n, score in scores.items() if n != number.value}
    assert number.digits and len(alternatives) >= 2  # the random model reads 6s: drops, left-out digits

    def ask(*asked: int, query: str = "") -> dict:
        numbers = "&".join(f"number={n}" for n in asked)
        answer = client.post(f"/v1/confirm?{numbers}{query}", files=files(image, image))
        assert answer.status_code == 200 and answer.headers["X-Model-Version"]
        first, second = answer.json()["results"]
        assert second == {**first, "index": 1, "timing": second["timing"]}  # each image answered
        assert first["expected"] == list(dict.fromkeys(asked)) and first["read"]["text"] == number.text
        assert first["match"] == (first["passing"][0] if first["shown"] else None)
        return first

    read = ask(number.value, query="&alternatives=false")
    assert (read["shown"], read["match"], read["how"], read["edit"], read["score"]) == (
        True,
        number.value,
        "read",
        None,
        None,
    )
    assert [d["digit"] for d in read["digits"]] == [d.digit for d in number.digits]
    for value, score in alternatives.items():
        passed = ask(value, query="&min_score=0")
        assert (passed["match"], passed["how"]) == (value, "alternative")
        assert passed["edit"] in ("insert", "drop", "swap") and passed["passing"] == [value]
        assert passed["score"] == pytest.approx(score, abs=1e-4)
        assert [d["digit"] for d in passed["digits"]] == [
            int(c) for c in str(value).zfill(len(passed["digits"]))
        ]
        assert ask(value, query="&min_score=0&alternatives=false")["shown"] is False
        if score < 0.99:
            assert ask(value, query=f"&min_score={score + 0.01:.4f}")["shown"] is False
        assert ask(value)["shown"] is (score >= 0.2)  # the default min_score
    nowhere = next(n for n in range(10**7, 10**8) if n not in scores)
    missing = ask(nowhere, query="&min_score=0")
    assert (missing["shown"], missing["match"], missing["passing"], missing["how"], missing["digits"]) == (
        False,
        None,
        [],
        None,
        [],
    )
    # several numbers (a street's): the number read first, then the alternatives surest first
    surest = sorted(alternatives, key=lambda n: -alternatives[n])
    street = ask(nowhere, *reversed(surest), number.value, nowhere, query="&min_score=0")
    assert street["expected"] == [nowhere, *reversed(surest), number.value]  # as asked, each once
    assert street["passing"] == [number.value, *surest] and street["how"] == "read"
    without_read = ask(*surest, nowhere, query="&min_score=0")
    assert without_read["match"] == surest[0] and without_read["score"] == pytest.approx(
        alternatives[surest[0]], abs=1e-4
    )
    metrics = client.get("/metrics").text
    assert 'digitserve_confirmed_total{how="read"} 4.0' in metrics
    assert 'digitserve_confirmed_total{how="none"}' in metrics
    for bad in ("12a", "", "-3", "1" * 16, "1.5", "5&number=x"):
        refused = client.post(f"/v1/confirm?number={bad}", files=files(image))
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", bad
    assert client.post("/v1/confirm", files=files(image)).status_code == 422  # no number
    too_many = "&".join(f"number={n}" for n in range(101))
    assert client.post(f"/v1/confirm?{too_many}", files=files(image)).status_code == 422
    assert client.post("/v1/confirm?number=5&min_score=1.5", files=files(image)).status_code == 422
    raw = client.post(
        f"/v1/confirm?number={number.value}", content=image, headers={"Content-Type": "image/png"}
    )
    assert raw.json()["results"][0]["how"] == "read"  # the image as the body, as elsewhere
    leading = client.post(f"/v1/confirm?number=00{number.value}", files=files(image)).json()["results"][0]
    assert leading["expected"] == [number.value] and leading["how"] == "read"
    # /v1/assemble answers the same from /v1/detect's answer, without the image (what the page does)
    body = {"detections": found["sites"], "boxes": found["detections"]}
    assert client.post("/v1/assemble", json=body).json()["confirm"] is None  # not asked
    for asked in ([v] for v in alternatives), [[*map(str, surest), str(number.value)]]:
        for numbers in asked:
            direct = ask(*map(int, numbers), query="&min_score=0")
            again = client.post(
                "/v1/assemble", json={**body, "confirm": list(map(str, numbers)), "min_score": 0}
            )
            assert again.json()["confirm"] == {k: direct[k] for k in again.json()["confirm"]}
            assert set(direct) - set(again.json()["confirm"]) == {
                "index",
                "width",
                "height",
                "read",
                "timing",
            }
    read_only = {**body, "confirm": [str(surest[0])], "min_score": None}
    assert client.post("/v1/assemble", json=read_only).json()["confirm"]["shown"] is False
    for wrong in (
        {"confirm": ["4x"]},
        {"confirm": [12]},
        {"confirm": []},
        {"confirm": ["1"], "min_score": 2},
    ):
        refused = client.post("/v1/assemble", json={**body, **wrong})
        assert refused.status_code == 422, wrong


def documented_example(client: TestClient, model: type[BaseModel]) -> dict:
    """The example /docs shows for `model`, checked to be a valid one: nothing dropped or added (the
    OpenAPI document leaves out the nulls, fit and quality)."""
    (example,) = client.get("/openapi.json").json()["components"]["schemas"][model.__name__]["examples"]
    assert model.model_validate(example).model_dump(exclude_none=True) == example
    return dict(example["results"][0])


def test_the_documented_recognize_example_is_a_valid_answer(client: TestClient) -> None:
    result = documented_example(client, RecognizeResponse)
    assert result["text"] == "".join(str(d["digit"]) for d in result["digits"])
    for alt in result["alternatives"]:
        assert alt["text"] == "".join(str(d["digit"]) for d in alt["digits"]) != result["text"]


def test_the_documented_confirm_example_is_a_valid_answer(client: TestClient) -> None:
    result = documented_example(client, ConfirmResponse)
    assert result["match"] == result["passing"][0] and set(result["passing"]) <= set(result["expected"])
    assert (
        str(result["match"]) == "".join(str(d["digit"]) for d in result["digits"]) != result["read"]["text"]
    )
    assert result["how"] == "alternative" and result["read"]["number"] not in result["expected"]
