"""POST /v1/detect, /v1/recognize and /v1/confirm: multipart uploads in fields named `image`
(repeatable), one image as the request body, or base64 in JSON (`service.uploads`); POST /v1/assemble."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from models.assembly import assemble_number
from models.confirm import MIN_SCORE, confirm_number
from models.reread import Findings
from models.verifier import holds_at
from service.deps import ApiKeyDep, StateDep
from service.pipeline import (
    alternatives_schema,
    confirm_schema,
    confirmed_fields,
    detect_uploads,
    from_schema,
    to_schema,
)
from service.schemas import (
    MAX_ALTERNATIVES,
    MAX_CONFIRM_NUMBERS,
    AssembleRequest,
    AssembleResponse,
    ConfirmResponse,
    ConfirmResult,
    DetectResponse,
    DetectResult,
    HouseNumber,
    NumberRead,
    RecognizeResponse,
    RecognizeResult,
    error_responses,
)
from service.uploads import RAW_BODY_OPENAPI, UploadsDep

router = APIRouter(prefix="/v1", tags=["inference"])
ERRORS = error_responses(400, 401, 413, 415, 422, 500, 503)
# Each answer names the model and settings that made it (`service.predictor.serving_version`, also in
# /v1/model), so that a reading a client stores can be traced to what made it, behind a load
# balancer or across a rollout too.
VERSION_HEADER = "X-Model-Version"
VERSIONED: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            VERSION_HEADER: {
                "description": "what made the answer: /v1/model's `version`",
                "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
            }
        }
    }
}


def image_route(path: str, model: type[BaseModel]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """POST `path` on the router for uploaded images (`service.uploads`: fields, a raw body or base64
    JSON), answering `model`, with the errors and the X-Model-Version header documented."""
    return router.post(
        path, response_model=model, responses={**ERRORS, **VERSIONED}, openapi_extra=RAW_BODY_OPENAPI
    )


@image_route("/detect", DetectResponse)
async def detect(
    _: ApiKeyDep,
    state: StateDep,
    image: UploadsDep,
    response: Response,
    min_score: Annotated[float, Query(ge=0.0, le=1.0, description="drop detections scoring lower")] = 0.0,
) -> DetectResponse:
    """Every digit found in each image, COCO style, with the image size and timing."""
    _predictor, results = await detect_uploads(image, state)
    response.headers[VERSION_HEADER] = state.version
    return DetectResponse(
        results=[
            DetectResult(
                index=r.index,
                width=r.image.width,
                height=r.image.height,
                timing=r.timing,
                detections=[to_schema(d) for d in r.findings.detections if d.score >= min_score],
                sites=[to_schema(d) for d in r.findings.sites if d.score >= min_score],
            )
            for r in results
        ]
    )


@image_route("/recognize", RecognizeResponse)
async def recognize(
    _: ApiKeyDep,
    state: StateDep,
    image: UploadsDep,
    response: Response,
    alternatives: Annotated[
        int,
        Query(ge=0, le=MAX_ALTERNATIVES, description="also up to this many other readings one edit away"),
    ] = 0,
) -> RecognizeResponse:
    """The whole number in each image (-1 when no digit survives the assembly rule)."""
    predictor, results = await detect_uploads(image, state)
    response.headers[VERSION_HEADER] = state.version
    out = []
    for r in results:
        number = predictor.assemble(r.findings.sites)
        p_correct = predictor.p_correct(number, r.findings)
        if p_correct is not None:
            state.telemetry.p_correct.observe(p_correct)
        out.append(
            RecognizeResult(
                index=r.index,
                width=r.image.width,
                height=r.image.height,
                text=number.text,
                number=number.value,
                digits=[to_schema(d) for d in number.digits],
                confidence=round(number.confidence, 5),
                p_correct=None if p_correct is None else round(p_correct, 5),
                alternatives=alternatives_schema(number, r.findings, alternatives),
                timing=r.timing,
            )
        )
    return RecognizeResponse(results=out)


@image_route("/confirm", ConfirmResponse)
async def confirm(
    _: ApiKeyDep,
    state: StateDep,
    image: UploadsDep,
    response: Response,
    number: Annotated[
        list[HouseNumber],
        Query(
            min_length=1,
            max_length=MAX_CONFIRM_NUMBERS,
            description="the number the image should show (digits; 038 is 38); repeat it to ask which of "
            "several (a street's) the image shows",
        ),
    ],
    min_score: Annotated[
        float,
        Query(ge=0.0, le=1.0, description="a reading one edit away shows it from this edit score"),
    ] = MIN_SCORE,
    alternatives: Annotated[
        bool, Query(description="false: only the number read shows it, whatever min_score")
    ] = True,
) -> ConfirmResponse:
    """Whether each image shows `number` (or which of several): the number read, or a reading one edit
    away (a digit the assembly left out, a rival digit, a digit too many) whose edit scores at least
    `min_score`. Where a caller knows which number to expect (a delivery's address, a street's
    numbers), this passes the right number more often than comparing it with /v1/recognize's; how
    often other numbers pass, by `min_score`, is in docs/evaluation.md."""
    predictor, results = await detect_uploads(image, state)
    response.headers[VERSION_HEADER] = state.version
    expected = [int(n) for n in number]
    out = []
    for r in results:
        read = predictor.assemble(r.findings.sites)
        p_correct = predictor.p_correct(read, r.findings)
        found = confirm_number(
            expected, read, r.findings.sites, r.findings.detections, min_score if alternatives else None
        )
        state.telemetry.confirmed.labels(found.how or "none").inc()
        out.append(
            ConfirmResult(
                index=r.index,
                width=r.image.width,
                height=r.image.height,
                **confirmed_fields(found),
                read=NumberRead(
                    text=read.text,
                    number=read.value,
                    p_correct=None if p_correct is None else round(p_correct, 5),
                ),
                timing=r.timing,
            )
        )
    return ConfirmResponse(results=out)


@router.post(
    "/assemble",
    response_model=AssembleResponse,
    responses={**error_responses(401, 422, 500, 503), **VERSIONED},
)
async def assemble(
    body: AssembleRequest, state: StateDep, _: ApiKeyDep, response: Response
) -> AssembleResponse:
    """Re-read the number from the digit sites /v1/detect returned (`sites`), with other thresholds:
    the same rule as /v1/recognize, without sending the image again; with `boxes` (/v1/detect's
    `detections`) and the service's own thresholds (`read_columns` either way), also p_correct."""
    predictor, _batcher = state.require_ready()
    response.headers[VERSION_HEADER] = state.version
    overrides = {
        k: v
        for k, v in body.model_dump(
            exclude={"detections", "boxes", "alternatives", "confirm", "min_score"}
        ).items()
        if v is not None
    }
    params = replace(predictor.assembly, **overrides)
    detections = [from_schema(d) for d in body.detections]
    number = assemble_number(detections, params)
    findings = Findings([from_schema(d) for d in body.boxes or []], detections)
    p_correct = None
    if body.boxes is not None and holds_at(params, predictor.assembly):  # the service's thresholds only
        p_correct = predictor.p_correct(number, findings)
    return AssembleResponse(
        text=number.text,
        number=number.value,
        digits=[to_schema(d) for d in number.digits],
        confidence=round(number.confidence, 5),
        p_correct=None if p_correct is None else round(p_correct, 5),
        alternatives=alternatives_schema(number, findings, body.alternatives),
        confirm=confirm_schema(number, findings, body.confirm, body.min_score),
        thresholds=asdict(params),
    )
