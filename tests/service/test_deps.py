"""The API-key check (`service.deps.key_accepted`)."""

from __future__ import annotations

import secrets

import pytest

from service.deps import key_accepted

KEYS = frozenset({"key-one", "key-two", "clé-trois"})


@pytest.mark.parametrize("given", ["key-one", "key-two", "clé-trois"])
def test_each_configured_key_is_accepted(given: str) -> None:
    assert key_accepted(given, KEYS)


@pytest.mark.parametrize("given", [None, "", "key-on", "key-one ", "KEY-ONE", "key-onex", "clé-troi"])
def test_anything_else_is_refused(given: str | None) -> None:
    assert not key_accepted(given, KEYS)


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(secrets, "compare_digest", spy)
    assert key_accepted("key-one", KEYS)
    assert len(compared) == len(KEYS)  # no early exit on the first match
    assert {b for _, b in compared} == {k.encode() for k in KEYS}
