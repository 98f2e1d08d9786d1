"""Service fixtures: a tiny real checkpoint (random fast detector) and a started TestClient."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.checkpoint import save_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from service.app import create_app
from service.config import Settings


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = DETECTOR_PRESETS["fast"]
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny", build_detector(config).eval(), config, metrics={"map": 0.0}
    )


def png(size: tuple[int, int] = (126, 56), colour: str = "white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(size: tuple[int, int] = (126, 56), seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    array = (torch.rand(size[1], size[0], 3) * 255).byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


StartClient = Callable[..., TestClient]


@pytest.fixture
def start_client(tiny_checkpoint: Path) -> Iterator[StartClient]:
    """start_client(**settings) -> a TestClient whose startup (model load) has finished."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        settings = Settings(**{"checkpoint": tiny_checkpoint, "device": "cpu", **overrides})
        app = create_app(settings)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        assert app.state.service.loaded.wait(60), "model did not finish loading"
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(start_client: StartClient) -> TestClient:
    return start_client()
