"""POST /v1/detect and /v1/recognize: multipart uploads in fields named `image` (repeatable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from service.deps import ApiKeyDep, StateDep
from service.pipeline import detect_uploads, to_schema
from service.schemas import DetectResponse, DetectResult, RecognizeResponse, RecognizeResult, error_responses

router = APIRouter(prefix="/v1", tags=["inference"])
Images = Annotated[list[UploadFile], File(description="one or more images (PNG, JPEG, WebP, BMP, GIF, TIFF)")]
ERRORS = error_responses(400, 401, 413, 415, 422, 503)


@router.post("/detect", response_model=DetectResponse, responses=ERRORS)
async def detect(
    image: Images,
    state: StateDep,
    _: ApiKeyDep,
    min_score: Annotated[float, Query(ge=0.0, le=1.0, description="drop detections scoring lower")] = 0.0,
) -> DetectResponse:
    """Every digit found in each image, COCO style, with the image size and timing."""
    results = await detect_uploads(image, state)
    return DetectResponse(
        results=[
            DetectResult(
                index=r.index,
                width=r.image.width,
                height=r.image.height,
                timing=r.timing,
                detections=[to_schema(d) for d in r.detections if d.score >= min_score],
            )
            for r in results
        ]
    )


@router.post("/recognize", response_model=RecognizeResponse, responses=ERRORS)
async def recognize(image: Images, state: StateDep, _: ApiKeyDep) -> RecognizeResponse:
    """The whole number in each image (-1 when no digit survives the assembly rule)."""
    results = await detect_uploads(image, state)
    predictor, _batcher = state.require_ready()
    out = []
    for r in results:
        number = predictor.assemble(r.detections)
        out.append(
            RecognizeResult(
                index=r.index,
                width=r.image.width,
                height=r.image.height,
                text=number.text,
                number=number.value,
                digits=[to_schema(d) for d in number.digits],
                confidence=round(number.confidence, 5),
                timing=r.timing,
            )
        )
    return RecognizeResponse(results=out)
