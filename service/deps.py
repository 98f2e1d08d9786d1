"""FastAPI dependency aliases: the service state and the optional API-key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import UnauthorizedError
from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def key_accepted(given: str | None, keys: frozenset[str]) -> bool:
    """Whether `given` is one of `keys`, compared with `secrets.compare_digest` against every key, so
    that the time taken says nothing about how much of a key a guess got right."""
    if given is None:
        return False
    guess = given.encode()
    matches = [secrets.compare_digest(guess, key.encode()) for key in keys]  # every key, no early exit
    return any(matches)


def require_api_key(state: StateDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Open when no keys are configured; otherwise X-API-Key must be one of them (`key_accepted`)."""
    keys = state.settings.api_keys
    if keys and not key_accepted(x_api_key, keys):
        raise UnauthorizedError(
            "send a valid API key in the X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
        )


ApiKeyDep = Annotated[None, Depends(require_api_key)]
