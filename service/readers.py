"""Where `digitserve predict` finds a file's digits: in this process (`LocalReader`) or by asking a
running service (`RemoteReader`, which sends a request again while the server refuses it for now);
`read_one` and `read_all` read files, and `-` from standard input (`stdin_loader`), into `FileResult`s.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import httpx
from tqdm import tqdm

from models.alternatives import Alternative, alternative_readings
from models.assembly import AssembledNumber, AssemblyParams, Detection, assemble_number
from models.boxes import xywh_to_xyxy
from models.confirm import MIN_SCORE, Confirmation, confirm_number
from models.inference import resolve_device
from models.reread import Findings
from service.imaging import REDUCE_TO_PX, ImageError, decode_image
from service.pipeline import to_schema
from service.predictor import Predictor, serving_version

MAX_PIXELS = 100_000_000
RETRY_STATUSES = frozenset({429, 503})  # refused for now: the service's overloaded, not_ready, timeout
MAX_RETRY_WAIT_S = 30.0
STDIN = Path("-")  # as a path: one image read from standard input (a file named "-" is ./-)
STDIN_NAME = "stdin"  # its name where a file name is needed: the upload, the drawing


class ReadError(Exception):
    """The service refused or failed a request; the message says why."""


@dataclass(frozen=True)
class FileResult:
    path: Path
    detections: list[Detection]  # the detector's (pred.json)
    sites: list[Detection]  # what the number is read from (drawn)
    number: AssembledNumber | None
    elapsed_ms: float
    error: str = ""
    p_correct: float | None = None
    version: str | None = None  # what made the reading (X-Model-Version); None where no one version names it
    alternatives: tuple[Alternative, ...] = ()  # readings one edit away, surest first (--alternatives)
    confirmation: Confirmation | None = None  # whether it shows the number asked about (--confirm)


@dataclass(frozen=True)
class ReadOptions:
    """What `read_one` works out beside the number: up to `alternatives` readings one edit away, and
    which of the numbers `confirm` the image shows (None: not asked; `confirm_by_file` names a file's
    own) as /v1/confirm answers it, from `min_score` (None: the number read only)."""

    alternatives: int = 0
    confirm: tuple[int, ...] | None = None
    min_score: float | None = MIN_SCORE
    confirm_by_file: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # --confirm-from

    def asked(self, path: Path) -> tuple[int, ...] | None:
        """The numbers to ask `path` about: its own in `confirm_by_file` (by the path as given, else
        by its name), else `confirm`; None: none."""
        return self.confirm_by_file.get(str(path)) or self.confirm_by_file.get(path.name) or self.confirm


class Reader(Protocol):
    """Where a file's digits are found: in this process or by a running service."""

    assembly: AssemblyParams

    def detect(self, path: Path, data: bytes) -> tuple[Findings, str | None]:
        """The detections and digit sites of the image `data` (read from `path`), and the version
        that made them (the service's X-Model-Version; None where no one version names the reading)."""
        ...

    def p_correct(self, number: AssembledNumber, found: Findings) -> float | None: ...


class LocalReader:
    """Runs the checkpoint in this process."""

    def __init__(self, checkpoint: Path, device: str, params: dict[str, Any]) -> None:
        self.predictor = Predictor.load(checkpoint, resolve_device(device), **params)
        self.assembly = self.predictor.assembly
        # What a server of this checkpoint and these thresholds, at its default reduce_to_px, answers with
        self.version = serving_version(self.predictor, REDUCE_TO_PX)

    def detect(self, path: Path, data: bytes) -> tuple[Findings, str | None]:
        image = decode_image(data, MAX_PIXELS, reduce_to_px=REDUCE_TO_PX)
        return self.predictor.detect([image.pixels])[0].scaled(*image.scale), self.version

    def p_correct(self, number: AssembledNumber, found: Findings) -> float | None:
        return self.predictor.p_correct(number, found)


def retry_wait_s(response: httpx.Response | None, attempt: int, spread: float = 0.0) -> float:
    """Seconds to wait before try `attempt + 1`: the response's Retry-After (in seconds) when it has
    one, else 1, 2, 4 ... s; lengthened by up to half for `spread` in [0, 1] (clients refused together
    come back apart); at most MAX_RETRY_WAIT_S."""
    header = response.headers.get("retry-after", "") if response is not None else ""
    try:
        wait = float(header)
    except ValueError:
        wait = 2.0**attempt
    return min(max(wait, 0.0) * (1.0 + 0.5 * spread), MAX_RETRY_WAIT_S)


class RemoteReader:
    """Asks a running service; the number is assembled here with the server's thresholds. One reader
    may be used from several threads (httpx.Client is thread-safe)."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        params: dict[str, Any],
        *,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries, self.sleep, self.rng = retries, sleep, rng or random.Random()
        self.client = httpx.Client(
            timeout=60, headers={"X-API-Key": api_key} if api_key else {}, transport=transport
        )
        try:
            info = self._json(self._send("GET", "/v1/model"))
        except BaseException:
            self.client.close()
            raise
        served = AssemblyParams(**info["thresholds"])
        self.assembly = replace(served, **params)
        self.own_thresholds = self.assembly == served  # the server's verifier holds at these only

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response, after up to `retries` more tries while the server refuses for now (503,
        429) or cannot be reached; the last response or error stands."""
        for attempt in range(self.retries + 1):
            try:
                response = self.client.request(method, f"{self.url}{path}", **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                self.sleep(retry_wait_s(None, attempt, self.rng.random()))
                continue
            if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                return response
            self.sleep(retry_wait_s(response, attempt, self.rng.random()))
        raise AssertionError("unreachable")  # the loop returns or raises on its last try

    def p_correct(self, number: AssembledNumber, found: Findings) -> float | None:
        """The server's estimate for `found` (`/v1/assemble` with the detections as `boxes`); None at
        other thresholds than the server's, without a digit, or when the server gives none."""
        if not self.own_thresholds or not number.digits:
            return None
        body = {
            "detections": [to_schema(d).model_dump() for d in found.sites],
            "boxes": [to_schema(d).model_dump() for d in found.detections],
        }
        try:
            answer = self._json(self._send("POST", "/v1/assemble", json=body))
        except (ReadError, httpx.HTTPError):
            return None  # the number stands without it
        value = answer.get("p_correct")
        return None if value is None else float(value)

    def detect(self, path: Path, data: bytes) -> tuple[Findings, str | None]:
        """The server's findings and the version it answered with (per file: a server may be
        replaced during a run); None when the number is assembled here at other thresholds."""
        name = STDIN_NAME if path == STDIN else path.name
        response = self._send("POST", "/v1/detect", files=[("image", (name, data))])
        result = self._json(response)["results"][0]
        detections, sites = (
            [Detection(xywh_to_xyxy(d["bbox"]), d["digit"], d["score"]) for d in result[key]]
            for key in ("detections", "sites")
        )
        version = response.headers.get("x-model-version") if self.own_thresholds else None
        return Findings(detections, sites), version

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        if response.status_code != 200:
            message = body.get("error", {}).get("message", response.text[:200])
            raise ReadError(f"server answered {response.status_code}: {message}")
        return body


def stdin_loader(stream: BinaryIO | None) -> Callable[[Path], bytes]:
    """`Path.read_bytes`, but STDIN (`-`) reads `stream` to its end on first use and gives the same
    bytes after (for the drawing). Nothing piped in, or no standard input at all (None: a daemon's),
    is an OSError: the file's row gives it."""
    held: list[bytes] = []

    def load(path: Path) -> bytes:
        if path != STDIN:
            return path.read_bytes()
        if stream is None:
            raise OSError("there is no standard input to read")
        if not held:
            held.append(stream.read())
        if not held[0]:
            raise OSError("nothing came in on standard input")
        return held[0]

    return load


def read_one(
    reader: Reader,
    path: Path,
    load: Callable[[Path], bytes] = Path.read_bytes,
    options: ReadOptions = ReadOptions(),
) -> FileResult:
    """One file's detections and number, with what `options` asks for besides (readings one edit
    away, `models.alternatives`; whether it shows a number, `models.confirm`), or the error that
    stopped it; its bytes come from `load`."""
    start = time.perf_counter()
    try:
        found, version = reader.detect(path, load(path))
    except (ImageError, ReadError, OSError, httpx.HTTPError) as exc:
        return FileResult(path, [], [], None, (time.perf_counter() - start) * 1000, error=str(exc))
    number = assemble_number(found.sites, reader.assembly)
    elapsed = (time.perf_counter() - start) * 1000
    p_correct = reader.p_correct(number, found)
    others = tuple(alternative_readings(number, found.sites, found.detections, most=options.alternatives))
    asked = options.asked(path)
    confirmation = None
    if asked is not None:
        confirmation = confirm_number(asked, number, found.sites, found.detections, options.min_score)
    return FileResult(
        path,
        found.detections,
        found.sites,
        number,
        elapsed,
        p_correct=p_correct,
        version=version,
        alternatives=others,
        confirmation=confirmation,
    )


def read_all(
    reader: Reader,
    paths: Sequence[Path],
    progress: bool,
    concurrency: int = 1,
    load: Callable[[Path], bytes] = Path.read_bytes,
    options: ReadOptions = ReadOptions(),
) -> Iterator[FileResult]:
    """Every file's result (`read_one`), in the order of `paths`; with `concurrency` > 1, that many
    files are read at once on threads (for a RemoteReader: requests in flight)."""
    bar = tqdm(total=len(paths), desc="reading", unit="img", disable=not progress, file=sys.stderr)
    with bar, ThreadPoolExecutor(max_workers=concurrency) as pool:
        reads = pool.map if concurrency > 1 else map  # one at a time: on this thread
        for result in reads(lambda path: read_one(reader, path, load, options), paths):
            bar.update(1)
            yield result
