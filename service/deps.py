"""FastAPI dependency aliases: the service state and the optional API-key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import UnauthorizedError
from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def require_api_key(state: StateDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Open when no keys are configured; otherwise X-API-Key must be one of them."""
    keys = state.settings.api_keys
    if keys and x_api_key not in keys:
        raise UnauthorizedError(
            "send a valid API key in the X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
        )


ApiKeyDep = Annotated[None, Depends(require_api_key)]
