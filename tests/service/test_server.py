"""The real app under uvicorn on loopback: end to end, SIGTERM drain, and a bounded load test."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from models.checkpoint import save_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from tests.service.conftest import noise_png, png

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, checkpoint: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "DIGITSERVE_CHECKPOINT": str(checkpoint),
            "DIGITSERVE_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            **{f"DIGITSERVE_{k.upper()}": v for k, v in env.items()},
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--timeout-graceful-shutdown",
                "30",
                "--no-access-log",  # as `make serve` and the Dockerfile: the service logs requests itself
            ],
            cwd=REPO,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_for(self, path: str, timeout_s: float = 90) -> None:
        """Poll `path` until it answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[0][-3000:]
            try:
                if httpx.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered 200")

    def wait_ready(self) -> None:
        self.wait_for("/health/ready")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[0]


@pytest.fixture
def server_factory() -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, *args: object, **kwargs: str) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()


def assert_graceful(server: Server, log: str) -> None:
    """uvicorn finishes shutdown, then re-raises the SIGTERM it caught (exit status -15)."""
    assert server.process.returncode in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log, log[-2000:]


def upload(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


def test_end_to_end_on_a_real_server(server_factory: type[Server], tiny_checkpoint: Path) -> None:
    server = server_factory(tiny_checkpoint)
    server.wait_for("/health/live")
    server.wait_ready()
    response = httpx.post(
        f"{server.url}/v1/recognize",
        files=upload(noise_png(), png()),
        headers={"X-Request-ID": "e2e-1"},
        timeout=30,
    )
    assert response.status_code == 200 and len(response.json()["results"]) == 2
    assert response.headers["x-request-id"] == "e2e-1"
    assert "digitserve_requests_total" in httpx.get(f"{server.url}/metrics", timeout=5).text
    log = server.stop()
    assert re.search(r"service\.access: e2e-1 POST /v1/recognize 200 [0-9.]+ ms", log), log[-2000:]
    assert '"POST /v1/recognize HTTP/1.1" 200' not in log  # uvicorn's own access line is off
    assert "NO CUDA GPU FOUND" not in log  # device=cpu was asked for explicitly
    assert_graceful(server, log)


def test_json_logs_on_a_real_server(server_factory: type[Server], tiny_checkpoint: Path) -> None:
    """DIGITSERVE_LOG_FORMAT=json: every line the process writes, uvicorn's included, is one JSON
    object, and the access line carries the request's fields."""
    server = server_factory(tiny_checkpoint, log_format="json")
    server.wait_ready()
    headers = {"X-Request-ID": "json-1"}
    assert httpx.post(
        f"{server.url}/v1/recognize", files=upload(png()), headers=headers, timeout=30
    ).is_success
    log = server.stop()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # fails on any other line
    access = [x for x in lines if x.get("request_id") == "json-1"]
    assert len(access) == 1 and access[0]["logger"] == "service.access", log[-2000:]
    assert access[0]["method"] == "POST" and access[0]["path"] == "/v1/recognize"
    assert access[0]["status"] == 200 and access[0]["ms"] > 0
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # uvicorn's own lines are JSON too
    assert_graceful(server, log)


def test_a_misspelt_setting_stops_the_server(server_factory: type[Server], tiny_checkpoint: Path) -> None:
    server = server_factory(tiny_checkpoint, api_key='["secret"]')
    log = server.process.communicate(timeout=60)[0]
    assert server.process.returncode != 0
    assert "DIGITSERVE_API_KEY (did you mean DIGITSERVE_API_KEYS?)" in log, log[-2000:]


def test_sigterm_drains_in_flight_requests(server_factory: type[Server], tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = DETECTOR_PRESETS["seed"]  # slow on CPU: a wide in-flight window
    checkpoint = save_checkpoint(tmp_path / "seed", build_detector(config).eval(), config)
    server = server_factory(checkpoint, batch_size="1")
    server.wait_ready()
    result: dict[str, httpx.Response] = {}
    images = [noise_png(seed=i) for i in range(8)]
    worker = threading.Thread(
        target=lambda: result.setdefault(
            "r", httpx.post(f"{server.url}/v1/detect", files=upload(*images), timeout=120)
        )
    )
    worker.start()
    time.sleep(0.8)  # the request is in the model now
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):  # the listener is closed: new work is refused
        httpx.get(f"{server.url}/health/ready", timeout=2)
    worker.join(120)
    assert result["r"].status_code == 200 and len(result["r"].json()["results"]) == 8
    log = server.stop()
    assert_graceful(server, log)
    assert "draining" in log


def test_past_capacity_answers_503_not_hangs(server_factory: type[Server], tiny_checkpoint: Path) -> None:
    server = server_factory(tiny_checkpoint, queue_depth="2", batch_size="1")
    server.wait_ready()
    image = noise_png()

    async def hammer() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [client.post(f"{server.url}/v1/detect", files=upload(image, image)) for _ in range(24)]
            return await asyncio.wait_for(asyncio.gather(*calls), timeout=120)

    start = time.monotonic()
    responses = asyncio.run(hammer())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 503)
    assert time.monotonic() - start < 120


def test_uvicorn_serves_with_the_c_http_parser_and_event_loop() -> None:
    """Installed with the service, httptools and uvloop are what uvicorn's defaults pick."""
    config = Config("service.app:create_app", factory=True)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
