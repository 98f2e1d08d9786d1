"""Command line for files and folders.

    digitserve predict photos/ house.jpg                       # in-process, the default checkpoint
    digitserve predict photos/ --checkpoint runs/x/best --out preds/ --draw drawn/
    digitserve predict photos/ --url http://127.0.0.1:8000 --api-key KEY --concurrency 4
    digitserve predict proof.jpg --confirm 179                # does it show 179? (as /v1/confirm)
    digitserve predict street/ --confirm 12,14,16             # which of these does each show?
    digitserve predict proofs/ --confirm-from deliveries.csv  # each its own (columns file, number)
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
import csv
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from models.confirm import MIN_SCORE
from models.hw2 import image_ids_for
from models.load_errors import LOAD_ERRORS
from service.config import SHIPPED_CHECKPOINT, Settings, resolve_checkpoint
from service.imaging import ALLOWED_FORMATS, IMAGE_SUFFIXES, ImageError
from service.readers import (
    STDIN,
    FileResult,
    LocalReader,
    ReadError,
    ReadOptions,
    RemoteReader,
    read_all,
    stdin_loader,
)
from service.reports import (
    draw_boxes,
    drawing_names,
    format_table,
    result_record,
    summarize,
    write_predictions,
)
from service.schemas import HOUSE_NUMBER_PATTERN, MAX_ALTERNATIVES, MAX_CONFIRM_NUMBERS
from service.settings_doc import markdown_table, settings_rows

# a checkpoint that cannot be loaded: missing, damaged or unreadable (the message names the file)
MODEL_ERRORS: tuple[type[Exception], ...] = (*LOAD_ERRORS, OSError)


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
    asked = predict.add_mutually_exclusive_group()
    asked.add_argument(
        "--confirm",
        type=confirm_numbers_arg,
        metavar="N[,N...]",
        help="also say whether each image shows the number N (or which of several, comma-separated), as "
        "/v1/confirm?number=N answers it",
    )
    asked.add_argument(
        "--confirm-from",
        type=Path,
        metavar="CSV",
        help="the same with each image's own numbers: a CSV with columns file (a path as given, or a "
        "name) and number (one, or several apart by spaces)",
    )
    predict.add_argument(
        "--min-score",
        type=min_score_arg,
        default=UNSET,
        metavar="S",
        help="with --confirm or --confirm-from: a reading one edit away shows N from this edit score "
        f"(0-1, default {MIN_SCORE}); read: only the number read",
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


UNSET = object()  # --min-score not given: MIN_SCORE with --confirm, and nothing to refuse without it


def confirm_numbers_arg(text: str) -> tuple[int, ...]:
    """--confirm's N[,N...]: digits each, as /v1/confirm's `number` (038 is 38), up to its limit."""
    parts = text.split(",")
    bad = [p for p in parts if not re.fullmatch(HOUSE_NUMBER_PATTERN, p)]
    if bad:
        raise argparse.ArgumentTypeError(f"a house number is 1-15 digits, not {bad[0]!r}")
    if len(parts) > MAX_CONFIRM_NUMBERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_CONFIRM_NUMBERS} numbers, not {len(parts)}")
    return tuple(dict.fromkeys(int(p) for p in parts))


def expected_numbers(path: Path) -> dict[str, tuple[int, ...]]:
    """--confirm-from's CSV: a header with `file` and `number` columns (others ignored), then a row a
    file: the file as a path or a name -> the numbers asked about (one, or several apart by spaces;
    each as `confirm_numbers_arg` takes them). ValueError naming the line for a missing column, a bad
    number, a row without a file or a file given twice."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = csv.DictReader(handle)
        missing = {"file", "number"} - set(rows.fieldnames or [])
        if missing:
            raise ValueError(f"its header has no {' and no '.join(sorted(missing))} column")
        numbers: dict[str, tuple[int, ...]] = {}
        for row in rows:
            line = rows.line_num
            name = (row["file"] or "").strip()
            if not name:
                raise ValueError(f"line {line}: no file named")
            if name in numbers:
                raise ValueError(f"line {line}: {name} is given twice")
            try:
                numbers[name] = confirm_numbers_arg(",".join((row["number"] or "").split()))
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"line {line}: {exc}") from None
    return numbers


def min_score_arg(text: str) -> float | None:
    """--min-score: a score in 0-1, or "read" (None: only the number read shows N)."""
    if text == "read":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a score in 0-1, or read, not {text!r}")
    return value


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
    if args.confirm is None and args.confirm_from is None and args.min_score is not UNSET:
        parser.error("--min-score is --confirm's: give the number to confirm")
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
    by_file: dict[str, tuple[int, ...]] = {}
    if args.confirm_from is not None:
        try:
            by_file = expected_numbers(args.confirm_from)
        except (OSError, ValueError, csv.Error) as exc:
            print(f"digitserve: cannot use {args.confirm_from}: {exc}", file=sys.stderr)
            return 2
        unread = sorted(set(by_file) - {str(p) for p in paths} - {p.name for p in paths})
        if unread:
            named = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
            print(f"digitserve: {args.confirm_from} names files not read: {named}", file=sys.stderr)
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
        min_score = MIN_SCORE if args.min_score is UNSET else args.min_score
        options = ReadOptions(args.alternatives, args.confirm, min_score, by_file)
        for result in read_all(reader, paths, not args.no_progress, args.concurrency, load, options):
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
        print(format_table(results, args.alternatives > 0, args.confirm))
    print(summarize(results, time.perf_counter() - start), file=sys.stderr)
    write_outputs(args, paths, results, reader.assembly.score_threshold, load)
    if interrupted:
        return 130  # as a shell reports SIGINT
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
