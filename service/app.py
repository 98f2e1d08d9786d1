"""The app factory: `uvicorn --factory service.app:create_app`.

Startup resolves the device (CUDA when there is one and it is asked for), then loads and warms the
model in a background thread so that liveness answers at once and readiness tells the truth. SIGTERM
flips readiness to 503 and refuses new work while in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from models.host import cpu_info
from models.inference import resolve_device
from service.config import Settings, check_environment
from service.errors import install_error_handlers
from service.logs import configure_logging
from service.middleware import BodyLimitMiddleware, MetricsMiddleware, RequestIdMiddleware
from service.routes import health, inference, metrics, model, page
from service.state import ServiceState

log = logging.getLogger("service")


def _device_for(settings: Settings) -> torch.device:
    """`cuda` without a GPU raises (startup fails); `auto` without one serves on CPU, said loudly."""
    device = resolve_device(settings.device)
    if settings.device == "auto" and device.type == "cpu":
        log.warning(
            "NO CUDA GPU FOUND: serving on the CPU, %s (set DIGITSERVE_DEVICE=cuda to require a GPU)",
            cpu_info().describe(),
        )
    return device


def _chain_sigterm(state: ServiceState) -> None:
    """Mark the service draining on SIGTERM, then let the server's own handler stop it gracefully."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main thread (e.g. inside a test client)
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        state.drain()
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        return


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    state.device = _device_for(state.settings)
    _chain_sigterm(state)
    loader = asyncio.get_running_loop().run_in_executor(None, state.load)
    try:
        yield
    finally:
        state.drain()
        await loader  # a model still loading finishes before shutdown goes on
        if state.batcher is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, state.batcher.close, state.settings.drain_timeout_s
            )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; no model work happens until startup. Settings read from the environment
    (`settings` None) refuse a `DIGITSERVE_*` variable that names no setting."""
    if settings is None:
        check_environment(os.environ)
        settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="digitserve",
        version="0.1.0",
        lifespan=lifespan,
        description="Finds every digit in a photo and reads the whole house number.",
    )
    app.state.service = ServiceState(settings=settings)
    install_error_handlers(app)
    for router in (health.router, inference.router, model.router, metrics.router, page.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "X-Model-Version"],
        )
    # The last added runs first: metrics see every status, the 500 made from an unexpected error too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware, telemetry=app.state.service.telemetry)
    return app
