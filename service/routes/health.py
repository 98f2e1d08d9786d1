"""Liveness and readiness for container orchestration."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import StateDep
from service.schemas import Liveness, Readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Liveness)
async def live() -> Liveness:
    """The process is up. Never touches the model."""
    return Liveness()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "loading, failed or draining, with the reason"}},
)
async def ready(state: StateDep) -> JSONResponse:
    """200 only when the model is loaded, warmed up and the service is not draining."""
    body = Readiness(
        status=state.status,
        reason=state.reason,
        device=str(state.device),
        checkpoint=str(state.predictor.checkpoint) if state.predictor else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if state.status == "ready" else 503)
