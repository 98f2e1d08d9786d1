"""GET /: the page for people (plain HTML/CSS/JS shipped in service/static)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(tags=["page"])


@router.get("/", response_class=FileResponse, include_in_schema=False)
async def index() -> FileResponse:
    """Upload images, see the boxes and the number, move the threshold."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
