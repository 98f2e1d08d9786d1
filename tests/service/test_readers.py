"""Reading files for `digitserve predict`: in-process, from a server with retries, from standard input."""

from __future__ import annotations

import io
import random
import re
import threading
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from models.assembly import AssembledNumber, AssemblyParams, Detection
from models.reread import Findings
from service import readers


class OnceStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def test_the_stdin_loader_reads_files_as_files_and_standard_input_once() -> None:
    stream = OnceStream(b"bytes piped in")
    load = readers.stdin_loader(stream)
    assert load(readers.STDIN) == load(readers.STDIN) == b"bytes piped in" and stream.reads == 1
    assert load(Path(__file__)) == Path(__file__).read_bytes()
    with pytest.raises(OSError, match="no standard input"):
        readers.stdin_loader(None)(readers.STDIN)


def test_an_image_piped_in_is_sent_to_a_server_as_stdin() -> None:
    names: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/model":
            return httpx.Response(200, json={"thresholds": asdict(AssemblyParams())})
        names.extend(re.findall(r'filename="([^"]*)"', request.content.decode("latin-1")))
        digit = {"bbox": [1.0, 2.0, 5.0, 9.0], "category_id": 5, "digit": 4, "score": 0.9}
        return httpx.Response(200, json={"results": [{"detections": [digit], "sites": [digit]}]})

    reader = readers.RemoteReader("http://digitserve.test", None, {}, transport=httpx.MockTransport(server))
    reader.detect(readers.STDIN, b"image")
    reader.detect(Path("photos/12.png"), b"image")
    assert names == ["stdin", "12.png"]


@pytest.mark.parametrize(
    ("header", "attempt", "wait"),
    [
        ("5", 0, 5.0),
        ("0.5", 3, 0.5),
        ("600", 0, readers.MAX_RETRY_WAIT_S),
        (None, 0, 1.0),
        (None, 2, 4.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 1, 2.0),
        ("-3", 0, 0.0),
    ],
)
def test_retry_wait_follows_retry_after_else_backs_off(header: str | None, attempt: int, wait: float) -> None:
    response = httpx.Response(503, headers={"Retry-After": header} if header is not None else {})
    assert readers.retry_wait_s(response, attempt) == wait
    assert readers.retry_wait_s(response, attempt, spread=1.0) == min(1.5 * wait, readers.MAX_RETRY_WAIT_S)


def any_bytes(path: Path) -> bytes:
    """The bytes a fake server gets for every file: it reads none of them."""
    return b"image"


class FixedDraw(random.Random):
    """Draws `value` every time: the retry waits' spread, fixed."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


class FlakyServer:
    """A fake digitserve: /v1/model and /v1/assemble answer; /v1/detect answers each of `refusals` in
    turn (a status, or an exception to raise) before it reads one digit."""

    def __init__(self, refusals: list[int | Exception]) -> None:
        self.refusals = refusals
        self.detect_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/model":
            return httpx.Response(200, json={"thresholds": asdict(AssemblyParams())})
        if request.url.path == "/v1/assemble":
            return httpx.Response(200, json={"p_correct": 0.8})
        self.detect_calls += 1
        if self.refusals:
            refusal = self.refusals.pop(0)
            if isinstance(refusal, Exception):
                raise refusal
            body = {"error": {"code": "overloaded", "message": f"refused with {refusal}"}}
            return httpx.Response(refusal, json=body, headers={"Retry-After": "2"})
        digit = {"bbox": [1.0, 2.0, 5.0, 9.0], "category_id": 8, "digit": 7, "score": 0.9}
        return httpx.Response(200, json={"results": [{"detections": [digit], "sites": [digit]}]})


def flaky_reader(
    server: FlakyServer, retries: int, slept: list[float], draw: float = 0.0
) -> readers.RemoteReader:
    return readers.RemoteReader(
        "http://digitserve.test",
        None,
        {},
        retries=retries,
        transport=httpx.MockTransport(server),
        sleep=slept.append,
        rng=FixedDraw(draw),
    )


def test_a_request_refused_for_now_is_sent_again_after_retry_after() -> None:
    server, slept = FlakyServer([503, 429, httpx.ConnectError("refused")]), list[float]()
    result = readers.read_one(flaky_reader(server, 3, slept, draw=0.5), Path("3.png"), any_bytes)
    assert result.error == "" and result.number is not None and result.number.text == "7"
    # Retry-After twice, then 2 ** 2 s for the connection refused; each a quarter longer (draw 0.5)
    assert result.p_correct == 0.8 and server.detect_calls == 4 and slept == [2.5, 2.5, 5.0]


def test_the_last_refusal_stands_when_the_retries_run_out() -> None:
    server, slept = FlakyServer([503, 503]), list[float]()
    result = readers.read_one(flaky_reader(server, 1, slept), Path("3.png"), any_bytes)
    assert result.number is None and "server answered 503: refused with 503" in result.error
    assert server.detect_calls == 2 and slept == [2.0]
    unreachable = FlakyServer([httpx.ConnectError("refused")] * 2)
    result = readers.read_one(flaky_reader(unreachable, 1, []), Path("3.png"), any_bytes)
    assert result.number is None and "refused" in result.error


def test_an_answer_about_the_image_is_not_retried() -> None:
    server, slept = FlakyServer([415]), list[float]()
    result = readers.read_one(flaky_reader(server, 3, slept), Path("3.png"), any_bytes)
    assert "server answered 415" in result.error and server.detect_calls == 1 and slept == []


class BarrierReader:
    """Reads nothing until `parties` files are being read at once; the first file is the slowest."""

    assembly = AssemblyParams()

    def __init__(self, parties: int, first: Path, timeout_s: float = 10.0) -> None:
        self.barrier, self.first = threading.Barrier(parties, timeout=timeout_s), first

    def detect(self, path: Path, data: bytes) -> tuple[Findings, str | None]:
        self.barrier.wait()
        if path == self.first:
            time.sleep(0.2)
        digit = Detection((0.0, 0.0, 4.0, 8.0), int(path.stem[0]), 0.9)
        return Findings([digit], [digit]), None

    def p_correct(self, number: AssembledNumber, found: Findings) -> float | None:
        return None


def test_concurrent_reads_overlap_and_keep_the_files_order(tmp_path: Path) -> None:
    paths = [tmp_path / f"{d}.png" for d in (1, 2, 3)]
    reader = BarrierReader(3, paths[0])

    results = list(readers.read_all(reader, paths, progress=False, concurrency=3, load=any_bytes))
    assert [r.path for r in results] == paths
    assert [r.number.text if r.number else "" for r in results] == ["1", "2", "3"]
    with pytest.raises(threading.BrokenBarrierError):  # one at a time, the barrier never fills
        list(readers.read_all(BarrierReader(3, paths[0], 0.5), paths, progress=False, load=any_bytes))
