"""Uploads -> decoded images -> batched detections, timed. Decoding runs in the thread pool and the
model in the batcher's worker thread: nothing heavy on the event loop."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from models.alternatives import Alternative, alternative_readings
from models.assembly import AssembledNumber, Detection
from models.boxes import xywh_to_xyxy, xyxy_to_xywh
from models.confirm import Confirmation, confirm_number
from models.labels import digit_to_category_id
from models.reread import Findings
from service.errors import RequestTimeoutError, TooManyImagesError, UploadError
from service.imaging import DecodedImage, ImageError, decode_image
from service.predictor import Predictor
from service.schemas import AlternativeReading, Confirmed, DigitDetection, Timing
from service.state import ServiceState


@dataclass(frozen=True)
class ImageResult:
    index: int
    image: DecodedImage
    findings: Findings
    timing: Timing


async def decode_uploads(uploads: list[UploadFile], state: ServiceState) -> list[tuple[DecodedImage, float]]:
    """Each upload decoded (with its decode ms), or UploadError naming the first bad one."""
    limit = state.settings.max_images_per_request
    if len(uploads) > limit:
        raise TooManyImagesError(f"{len(uploads)} images sent; at most {limit} per request")
    decoded = []
    for index, upload in enumerate(uploads):
        start = time.perf_counter()
        data = await upload.read()
        try:
            image = await run_in_threadpool(
                decode_image,
                data,
                state.settings.max_pixels,
                max_aspect_ratio=state.settings.max_aspect_ratio,
                reduce_to_px=state.settings.reduce_to_px,
            )
        except ImageError as exc:
            raise UploadError(index, exc) from exc
        seconds = time.perf_counter() - start
        state.telemetry.decode.labels(image.format).observe(seconds)
        decoded.append((image, seconds * 1000))
    return decoded


async def detect_uploads(
    uploads: list[UploadFile], state: ServiceState
) -> tuple[Predictor, list[ImageResult]]:
    """The predictor that served the request and what it found in every upload, in request order,
    in the upload's pixels (a photo read reduced has its boxes scaled back up: `DecodedImage.scale`).
    Readiness is checked once, before any work: a request admitted before draining finishes."""
    start = time.perf_counter()
    predictor, batcher = state.require_ready()
    decoded = await decode_uploads(uploads, state)
    infer_start = time.perf_counter()
    try:
        findings = await asyncio.wait_for(
            batcher.submit([d.pixels for d, _ in decoded]), state.settings.request_timeout_s
        )
    except TimeoutError as exc:
        raise RequestTimeoutError(
            "the model did not answer in time; retry later", headers={"Retry-After": "5"}
        ) from exc
    done = time.perf_counter()
    infer_ms, total_ms = (done - infer_start) * 1000, (done - start) * 1000
    return predictor, [
        ImageResult(
            i,
            image,
            found.scaled(*image.scale),
            Timing(decode_ms=decode_ms, inference_ms=infer_ms, total_ms=total_ms),
        )
        for i, ((image, decode_ms), found) in enumerate(zip(decoded, findings, strict=True))
    ]


def to_schema(detection: Detection) -> DigitDetection:
    """A detection as the API writes it (bbox [x, y, w, h] in pixels, category_id = digit + 1)."""
    return DigitDetection(
        bbox=[round(v, 2) for v in xyxy_to_xywh(detection.box_xyxy)],
        category_id=digit_to_category_id(detection.digit),
        digit=detection.digit,
        score=round(detection.score, 5),
        fit=None if detection.fit is None else round(detection.fit, 5),
        quality=None if detection.quality is None else round(detection.quality, 5),
    )


def alternatives_schema(number: AssembledNumber, findings: Findings, most: int) -> list[AlternativeReading]:
    """The first `most` readings one edit from `number` (`models.alternatives`), as the API writes them."""
    found = alternative_readings(number, findings.sites, findings.detections, most=most)
    return [alternative_schema(a) for a in found]


def alternative_schema(alternative: Alternative) -> AlternativeReading:
    """One reading one edit away as the API writes it."""
    return AlternativeReading(
        text=alternative.number.text,
        number=alternative.number.value,
        edit=alternative.edit,
        score=round(alternative.score, 5),
        digits=[to_schema(d) for d in alternative.number.digits],
    )


def confirm_schema(
    number: AssembledNumber, findings: Findings, expected: list[str] | None, min_score: float | None
) -> Confirmed | None:
    """Which of the numbers `expected` (digits; None: not asked, None back) the image `number` was
    read from (with its `findings`) shows, from `min_score` (`models.confirm`), as the API writes it."""
    if expected is None:
        return None
    found = confirm_number([int(n) for n in expected], number, findings.sites, findings.detections, min_score)
    return Confirmed(**confirmed_fields(found))


def confirmed_fields(found: Confirmation) -> dict[str, Any]:
    """/v1/confirm's answer for one image (`Confirmed`'s fields), as the API writes it."""
    return {
        "expected": list(found.asked),
        "shown": found.shown,
        "match": found.match,
        "passing": list(found.passing),
        "how": found.how,
        "digits": [] if found.number is None else [to_schema(d) for d in found.number.digits],
        "edit": found.edit,
        "score": None if found.score is None else round(found.score, 5),
    }


def from_schema(detection: DigitDetection) -> Detection:
    """The API's detection back as the models' (xyxy box, digit, score), as the assembly reads it."""
    return Detection(xywh_to_xyxy(detection.bbox), detection.digit, detection.score)
