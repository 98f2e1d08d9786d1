"""Command line for files and folders.

    digitserve predict photos/ house.jpg                       # in-process, the default checkpoint
    digitserve predict photos/ --checkpoint runs/x/best --out preds/ --draw drawn/
    digitserve predict photos/ --url http://127.0.0.1:8000 --api-key KEY --concurrency 4
    curl -s https://example.org/house.jpg | digitserve predict -   # `-`: an image from standard input
    digitserve settings                                          # the service's DIGITSERVE_* settings

Prints a table (file, number, confidence, p_correct, digits, ms), or with --format jsonl one JSON object
a file as it is read (`result_record`); with --out it also writes HW2 `pred.json`
and `pred.csv`; --draw saves each image with its boxes. Interrupted (Ctrl-C), it prints, writes and
draws the files read so far and exits with 130. Same decoding and number assembly as the service.
p_correct (the checkpoint's number verifier, models/verifier.py) is "-" where the checkpoint has
no verifier fitted on the pipeline run, and with --url at other thresholds than the server's.

With --url, --concurrency N keeps N requests in flight (the server batches them), and a request the
server refuses for now (503 or 429: overloaded, not ready, timed out) or that never reaches it is sent
again up to --retries times, after the server's Retry-After or 1, 2, 4 ... s (up to half as long again,
drawn at random, so that requests refused together come back apart): a brief refusal or a restart
costs time, not the file. A file still refused after its retries is a row with its error.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import httpx
from PIL import Image, ImageDraw
from tqdm import tqdm

from models.alternatives import Alternative, alternative_readings
from models.assembly import AssembledNumber, AssemblyParams, Detection, assemble_number
from models.boxes import xywh_to_xyxy
from models.hw2 import image_ids_for, write_pred_csv, write_pred_json
from models.inference import resolve_device
from models.load_errors import LOAD_ERRORS
from models.reread import Findings
from service.config import SHIPPED_CHECKPOINT, Settings, resolve_checkpoint
from service.imaging import ALLOWED_FORMATS, IMAGE_SUFFIXES, REDUCE_TO_PX, ImageError, decode_image
from service.pipeline import alternative_schema, to_schema
from service.predictor import Predictor, serving_version
from service.schemas import MAX_ALTERNATIVES
from service.settings_doc import markdown_table, settings_rows

MAX_PIXELS = 100_000_000
RETRY_STATUSES = frozenset({429, 503})  # refused for now: the service's overloaded, not_ready, timeout
MAX_RETRY_WAIT_S = 30.0
# a checkpoint that cannot be loaded: missing, damaged or unreadable (the message names the file)
MODEL_ERRORS: tuple[type[Exception], ...] = (*LOAD_ERRORS, OSError)
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


def collect_images(paths: Sequence[Path], recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """(files as given, folders expanded to their image files; what the folders hold besides, skipped).

    A folder's images come sorted, numeric names numerically; with `recursive`, then those of the
    folders inside it, in name order (a phone's DCIM/100APPLE, 101APPLE, ...); without it, the folders
    inside are skipped. Hidden files and folders (.DS_Store) are left out of both. `-` (STDIN) stays
    as given, once at most: standard input can be read once."""
    found: list[Path] = []
    skipped: list[Path] = []
    if list(paths).count(STDIN) > 1:
        raise SystemExit("digitserve: - (standard input) can be given once")
    for path in paths:
        if path == STDIN:
            found.append(path)
        elif path.is_dir():
            images, others = folder_images(path, recursive)
            found.extend(images)
            skipped.extend(others)
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"digitserve: {path} does not exist")
    return found, skipped


def folder_images(folder: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """`collect_images` for one folder. Linked folders are not followed (a link can loop)."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    images = sorted(
        (p for p in files if p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.name),
    )
    skipped = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    for sub in (p for p in entries if p.is_dir()):
        if recursive and not sub.is_symlink():
            inner, others = folder_images(sub, recursive)
            images.extend(inner)
            skipped.extend(others)
        else:
            skipped.append(sub)
    return images, skipped


def skipped_note(skipped: Sequence[Path], shown: int = 5) -> str:
    """One line naming what the folders held besides images (the first `shown`): files whose names
    are not of an image format, and folders inside, which `--recursive` would read."""
    names = ", ".join(p.name + "/" * p.is_dir() for p in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    folders = sum(p.is_dir() for p in skipped)
    hint = f"; --recursive reads the {folders} folder(s) inside" if folders else ""
    return (
        f"digitserve: skipped {len(skipped)} {'entry' if len(skipped) == 1 else 'entries'} in the folders "
        "that are not images by their names "
        f"({', '.join(sorted(ALLOWED_FORMATS))}): {names}{more}{hint}"
    )


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
        params: dict[str, float],
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
    reader: Reader, path: Path, load: Callable[[Path], bytes] = Path.read_bytes, alternatives: int = 0
) -> FileResult:
    """One file's detections and number, and up to `alternatives` readings one edit away
    (`models.alternatives`), or the error that stopped it; its bytes come from `load`."""
    start = time.perf_counter()
    try:
        found, version = reader.detect(path, load(path))
    except (ImageError, ReadError, OSError, httpx.HTTPError) as exc:
        return FileResult(path, [], [], None, (time.perf_counter() - start) * 1000, error=str(exc))
    number = assemble_number(found.sites, reader.assembly)
    elapsed = (time.perf_counter() - start) * 1000
    p_correct = reader.p_correct(number, found)
    others = tuple(alternative_readings(number, found.sites, found.detections)[:alternatives])
    return FileResult(
        path,
        found.detections,
        found.sites,
        number,
        elapsed,
        p_correct=p_correct,
        version=version,
        alternatives=others,
    )


def read_all(
    reader: Reader,
    paths: Sequence[Path],
    progress: bool,
    concurrency: int = 1,
    load: Callable[[Path], bytes] = Path.read_bytes,
    alternatives: int = 0,
) -> Iterator[FileResult]:
    """Every file's result (`read_one`), in the order of `paths`; with `concurrency` > 1, that many
    files are read at once on threads (for a RemoteReader: requests in flight)."""
    bar = tqdm(total=len(paths), desc="reading", unit="img", disable=not progress, file=sys.stderr)
    with bar, ThreadPoolExecutor(max_workers=concurrency) as pool:
        reads = pool.map if concurrency > 1 else map  # one at a time: on this thread
        for result in reads(lambda path: read_one(reader, path, load, alternatives), paths):
            bar.update(1)
            yield result


def format_table(results: Sequence[FileResult], alternatives: bool = False) -> str:
    """One row a file; with `alternatives`, a last column of its readings one edit away."""
    width = max([len(str(r.path)) for r in results] + [4])
    lines = [
        f"{'file':{width}}  {'number':>10}  {'confidence':>10}  {'p_correct':>9}  {'digits':>6}  {'ms':>7}"
        + "  or perhaps" * alternatives
    ]
    for r in results:
        if r.number is None:
            lines.append(f"{r.path!s:{width}}  {'error':>10}  {r.error}")
        else:
            p_correct = "-" if r.p_correct is None else f"{r.p_correct:.3f}"
            others = "  " + (", ".join(a.number.text for a in r.alternatives) or "-") if alternatives else ""
            lines.append(
                f"{r.path!s:{width}}  {r.number.text or '-1':>10}  {r.number.confidence:10.3f}  "
                f"{p_correct:>9}  {len(r.number.digits):6d}  {r.elapsed_ms:7.1f}{others}"
            )
    return "\n".join(lines)


def result_record(result: FileResult) -> dict[str, Any]:
    """One file's reading as `--format jsonl` writes it: `file`, and either `error`, or the number as
    /v1/recognize answers it (`text`, `number`: -1 when no digit survives, `confidence`, `p_correct`,
    `digits` with COCO `bbox` [x, y, w, h] in the image's pixels and `category_id` = digit + 1,
    `alternatives` as /v1/recognize?alternatives=k gives them: empty unless asked), `version` (what
    made it, as the service's X-Model-Version; null at other thresholds than a server's own) and
    `ms`."""
    if result.number is None:
        return {"file": str(result.path), "error": result.error}
    number = result.number
    return {
        "file": str(result.path),
        "text": number.text,
        "number": number.value,
        "confidence": round(number.confidence, 5),
        "p_correct": None if result.p_correct is None else round(result.p_correct, 5),
        "digits": [to_schema(d).model_dump() for d in number.digits],
        "alternatives": [alternative_schema(a).model_dump() for a in result.alternatives],
        "version": result.version,
        "ms": round(result.elapsed_ms, 1),
    }


def summarize(results: Sequence[FileResult], seconds: float) -> str:
    """One line for the end of a run: files, numbers found, errors, time and pace, and the versions
    that read them (more than one: the server was replaced during the run)."""
    found = sum(1 for r in results if r.number is not None and r.number.digits)
    errors = sum(1 for r in results if r.error)
    pace = f", {len(results) / seconds:.1f} files/s" if results and seconds > 0 else ""
    versions = list(dict.fromkeys(r.version for r in results if r.version))
    named = f"; version{'s' if len(versions) > 1 else ''} {', '.join(versions)}" if versions else ""
    return (
        f"digitserve: {len(results)} files: a number in {found}, no digit in "
        f"{len(results) - found - errors}, an error in {errors}; {seconds:.1f} s{pace}{named}"
    )


def drawing_names(paths: Sequence[Path]) -> list[str]:
    """Each file's drawing: `<stem>.png`, or `<stem>_<position>.png` (1-based, in the run) where files
    share a stem (IMG_1.HEIC and IMG_1.JPG, or 1.png in two folders), so that no drawing overwrites
    another. Standard input's is `stdin.png`."""
    stems = [STDIN_NAME if p == STDIN else p.stem for p in paths]
    counts = Counter(stems)
    names = [f"{stem}.png" if counts[stem] == 1 else f"{stem}_{i}.png" for i, stem in enumerate(stems, 1)]
    taken: set[str] = set()
    for i, name in enumerate(names):  # a file may itself be called 3_1.png: then one more "_"
        while name in taken:
            name = name.removesuffix(".png") + "_.png"
        names[i] = name
        taken.add(name)
    return names


def draw_boxes(
    result: FileResult,
    out_dir: Path,
    score_threshold: float,
    name: str | None = None,
    load: Callable[[Path], bytes] = Path.read_bytes,
) -> Path:
    """Save the image (its bytes from `load`) with every digit site above the threshold, as `name`
    (default `<stem>.png`); the digits used in green. The image is decoded as it was read (upright by
    its orientation, whole), so the boxes fall on their digits."""
    # no size limits: the file was read once already, by this process or by a server with its own
    decoded = decode_image(load(result.path), 2**62, max_aspect_ratio=float("inf"), reduce_to_px=0)
    canvas = Image.fromarray(decoded.pixels)
    draw = ImageDraw.Draw(canvas)
    used = set(result.number.digits) if result.number else set()
    for det in result.sites:
        if det.score >= score_threshold:
            colour = (0, 200, 83) if det in used else (255, 171, 0)
            draw.rectangle(det.box_xyxy, outline=colour, width=2)
            draw.text(
                (det.box_xyxy[0] + 2, max(0, det.box_xyxy[1] - 11)),
                f"{det.digit} {det.score:.2f}",
                fill=colour,
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (name or f"{result.path.stem}.png")
    canvas.save(path)
    return path


def write_predictions(out_dir: Path, image_ids: Sequence[int], results: Sequence[FileResult]) -> None:
    """HW2 `pred.json` (the detections) and `pred.csv` (the numbers, -1 where none) for `results`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = list(zip(image_ids, results, strict=True))
    write_pred_json(out_dir / "pred.json", {i: r.detections for i, r in pairs})
    write_pred_csv(out_dir / "pred.csv", {i: r.number.value if r.number else -1 for i, r in pairs})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="digitserve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="read the numbers in image files and folders")
    predict.add_argument(
        "paths", nargs="+", type=Path, help="image files and folders; - reads one image from standard input"
    )
    predict.add_argument(
        "-r", "--recursive", action="store_true", help="read the folders inside the folders given too"
    )
    where = predict.add_mutually_exclusive_group()
    where.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: the shipped model)")
    where.add_argument("--url", help="a running digitserve, e.g. http://127.0.0.1:8000")
    predict.add_argument("--api-key", help="X-API-Key for --url")
    predict.add_argument(
        "--concurrency", type=int, default=1, help="with --url: requests in flight at once (default 1)"
    )
    predict.add_argument(
        "--retries",
        type=int,
        default=3,
        help="with --url: tries more for a request refused for now (503, 429) or not delivered (default 3)",
    )
    predict.add_argument(
        "--alternatives",
        type=int,
        default=0,
        metavar="K",
        help="also up to K readings one edit away, surest first, as /v1/recognize?alternatives=K (0-10)",
    )
    predict.add_argument("--device", default="auto")
    predict.add_argument("--score-threshold", type=float)
    predict.add_argument("--iou-threshold", type=float)
    predict.add_argument("--out", type=Path, help="write pred.json and pred.csv (HW2 formats) here")
    predict.add_argument("--draw", type=Path, help="save images with their boxes here")
    predict.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table: one row a file once all are read; jsonl: one JSON object a file as each is read",
    )
    predict.add_argument("--no-progress", action="store_true")
    settings = sub.add_parser(
        "settings", help="print the service's settings (DIGITSERVE_* variables) as a Markdown table"
    )
    settings.add_argument(
        "--checkpoint", type=Path, help="whose values an unset setting takes (default: the shipped model)"
    )
    return p


def open_reader(args: argparse.Namespace) -> LocalReader | RemoteReader:
    """The running service at `--url`, else the checkpoint in this process, with the thresholds given.
    Raises ReadError or httpx.HTTPError when the service cannot be used, one of `MODEL_ERRORS` when
    the checkpoint cannot be loaded."""
    params = {
        k: v
        for k, v in (("score_threshold", args.score_threshold), ("iou_threshold", args.iou_threshold))
        if v is not None
    }
    if args.url:
        return RemoteReader(args.url, args.api_key, params, retries=args.retries)
    return LocalReader(args.checkpoint or resolve_checkpoint(Settings()), args.device, params)


def write_outputs(
    args: argparse.Namespace,
    paths: Sequence[Path],
    results: Sequence[FileResult],
    score_threshold: float,
    load: Callable[[Path], bytes] = Path.read_bytes,
) -> None:
    """pred.json and pred.csv in `--out`, pictures of the boxes in `--draw`, where asked."""
    if args.out:
        write_predictions(args.out, image_ids_for(paths)[: len(results)], results)
    if args.draw:
        for r, name in zip(results, drawing_names([r.path for r in results]), strict=True):
            if r.number is not None:
                try:
                    draw_boxes(r, args.draw, score_threshold, name, load)
                except (ImageError, OSError) as exc:  # changed or gone since it was read
                    print(f"digitserve: cannot draw {r.path}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "settings":
        try:
            rows = settings_rows(args.checkpoint or SHIPPED_CHECKPOINT)
        except MODEL_ERRORS as exc:
            print(f"digitserve: cannot read the checkpoint: {exc}", file=sys.stderr)
            return 2
        print(markdown_table(rows), end="")
        return 0
    if args.concurrency < 1 or args.retries < 0:
        parser.error("--concurrency must be at least 1 and --retries at least 0")
    if not 0 <= args.alternatives <= MAX_ALTERNATIVES:
        parser.error(f"--alternatives must be 0-{MAX_ALTERNATIVES}")
    if args.concurrency > 1 and not args.url:
        parser.error("--concurrency needs --url: in-process, the model reads one file at a time")
    if STDIN in args.paths and sys.stdin is not None and sys.stdin.isatty():
        parser.error("- reads an image from standard input, here a terminal: pipe one in (- < house.jpg)")
    paths, skipped = collect_images(args.paths, args.recursive)
    if skipped:
        print(skipped_note(skipped), file=sys.stderr)
    if not paths:
        print("digitserve: no image files to read in the paths given", file=sys.stderr)
        return 2
    try:
        reader = open_reader(args)
    except (ReadError, httpx.HTTPError) as exc:
        print(f"digitserve: cannot use {args.url}: {exc}", file=sys.stderr)
        return 2
    except MODEL_ERRORS as exc:  # the checkpoint's: its message names the file
        print(f"digitserve: cannot load the model: {exc}", file=sys.stderr)
        return 2
    results: list[FileResult] = []
    interrupted, start = False, time.perf_counter()
    load = stdin_loader(sys.stdin.buffer if STDIN in paths and sys.stdin is not None else None)
    try:
        for result in read_all(
            reader, paths, not args.no_progress, args.concurrency, load, args.alternatives
        ):
            results.append(result)
            if args.format == "jsonl":
                print(json.dumps(result_record(result)), flush=True)
    except KeyboardInterrupt:  # keep what was read: its rows, pred files and drawings
        interrupted = True
        print(f"digitserve: interrupted after {len(results)} of {len(paths)} files", file=sys.stderr)
    finally:
        if isinstance(reader, RemoteReader):
            reader.close()
    if args.format == "table":
        print(format_table(results, args.alternatives > 0))
    print(summarize(results, time.perf_counter() - start), file=sys.stderr)
    write_outputs(args, paths, results, reader.assembly.score_threshold, load)
    if interrupted:
        return 130  # as a shell reports SIGINT
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
