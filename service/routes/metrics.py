"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import StateDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"}},
)
async def metrics(state: StateDep) -> Response:
    """Request counts and latencies by route and status, queue depth, batch sizes, inference time."""
    return Response(generate_latest(state.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
