"""Run a trained checkpoint over a split the way the service runs it; shared by the tools that do so
(`training.evaluate`, `training.vet`, `training.complete`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from models.assembly import Detection
from models.atomic import write_text
from models.checkpoint import CheckpointMeta
from models.hw2 import Detections
from models.inference import resolve_device
from models.optimize import load_prepared_detector
from models.photo import PhotoParams, Step, prepare_photo
from models.reader import DigitReader, ReaderMeta
from models.refiner import BoxRefiner, RefinerMeta, refine_images
from models.reread import read_boxes, reread_detections, reread_images
from models.rescorer import Rescorer, rescore_images
from models.zoom import ZoomParams
from training.data import DigitDataset, ImageRecord, collate, load_image, read_rgb
from training.engine import predict

P = TypeVar("P")
T = TypeVar("T")


def add_runner_args(p: argparse.ArgumentParser) -> None:
    """--device, --batch-size and --workers of a tool that runs a checkpoint over images."""
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return value == "on"


def _share(value: str) -> float:
    share = float(value)
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}")
    return share


# the zoom options' names in an argparse namespace, in `ZoomParams.with_trigger`'s order
ZOOM_ARGS = (
    "zoom_below_px",
    "search_tiles",
    "side_look",
    "fuse_first",
    "search_located",
    "search_below_p",
    "search_tiles_max",
    "search_near",
)


def zoom_from(options: object, zoom: ZoomParams) -> ZoomParams:
    """`zoom` with the zoom options (`add_zoom_arguments`, named as in `ZOOM_ARGS`) that `options`
    gives: each None keeps `zoom`'s setting."""
    return zoom.with_trigger(*(getattr(options, name) for name in ZOOM_ARGS))


def add_zoom_arguments(p: argparse.ArgumentParser, default_of: str) -> None:
    """The options of the second look and the search (`ZOOM_ARGS`), each None when not given: then
    `default_of`'s setting (the help text's words)."""
    p.add_argument(
        "--zoom-below-px",
        type=float,
        help=f"second look at small numbers (models/zoom.py); default: {default_of} (0 = off)",
    )
    p.add_argument(
        "--search-tiles",
        type=int,
        help="where the first pass locates no digit (or always, with search-located), search n x n "
        f"tiles of a large photo (models/zoom.py); default: {default_of} (0 = off)",
    )
    p.add_argument(
        "--side-look",
        type=float,
        help="where the number reaches within this many digit heights of a photo's left or right side, "
        f"read the photo again widened (models/zoom.py); default: {default_of} (0 = off)",
    )
    p.add_argument(
        "--fuse-first",
        type=float,
        help="average each box of the second look with the first pass's boxes of the same digit, those "
        f"counted this many times (models/zoom.py); default: {default_of} (0 = off)",
    )
    add_search_arguments(p, default_of)


def add_search_arguments(p: argparse.ArgumentParser, default_of: str) -> None:
    """`--search-located on|off` -> `args.search_located` True / False, `--search-below-p P` ->
    `args.search_below_p` (in [0, 1]), `--search-tiles-max M` -> `args.search_tiles_max` and
    `--search-near S` -> `args.search_near` (in [0, 1]), each None when not given (then `default_of`'s
    setting, the help text's words; `ZoomParams.search_located`, `.search_below_p`, `.search_tiles_max`
    and `.search_near`)."""
    p.add_argument(
        "--search-located",
        type=_on_off,
        metavar="{on,off}",
        help="search the tiles of a large photo also where the first pass locates a digit "
        f"(models/zoom.py); default: {default_of}",
    )
    p.add_argument(
        "--search-below-p",
        type=_share,
        metavar="P",
        help="with --search-located on, search such a photo only where the reading without the search has "
        f"the verifier's p_correct under P (models/zoom.py; 1 = every one); default: {default_of}",
    )
    p.add_argument(
        "--search-tiles-max",
        type=int,
        metavar="M",
        help="search a photo in as many tiles a side as fit, up to M (models/zoom.py; 0 = always "
        f"search-tiles); default: {default_of}",
    )
    p.add_argument(
        "--search-near",
        type=_share,
        metavar="S",
        help="search a photo whose first pass locates something only in the tiles that a first-pass "
        "detection scoring at least S (no taller than a tile) overlaps (models/zoom.py; 0 = every tile); "
        f"default: {default_of}",
    )


def load_prepared(
    checkpoint: str | Path, device_name: str
) -> tuple[FasterRCNN, CheckpointMeta, torch.device]:
    """The checkpoint's detector on `device_name` ("auto", "cpu", "cuda"), prepared as the service runs
    it (`models.optimize.load_prepared_detector`: int8 on the CPU when the checkpoint has the
    ranges), with its metadata and the device."""
    device = resolve_device(device_name)
    model, meta, _ = load_prepared_detector(checkpoint, device)
    return model, meta, device


def prepared_records(
    records: Sequence[ImageRecord], photo: PhotoParams, folder: Path
) -> tuple[list[ImageRecord], dict[int, tuple[Step, ...]]]:
    """`records` as the pipeline reads their photos (`models.photo.prepare_photo`, as the service
    prepares an upload): each photo a step changes written to `folder` as a PNG (lossless: read back,
    the same pixels) and its record pointed there, the others as they are; and image_id -> the steps
    that changed it. Every reader of the evaluation then reads what the service would."""
    if not photo.on:
        return list(records), {}
    out, steps = [], {}
    for record in tqdm(records, desc="photos", leave=False):
        pixels = np.ascontiguousarray(read_rgb(record.path).permute(1, 2, 0).numpy())
        prepared, done = prepare_photo(pixels, photo)
        if done:
            path = folder / f"{record.image_id}.png"
            Image.fromarray(prepared).save(path)
            record, steps[record.image_id] = replace(record, path=path), done
        out.append(record)
    return out, steps


def predict_records(
    model: FasterRCNN,
    records: Sequence[ImageRecord],
    device: torch.device,
    args: argparse.Namespace,
    desc: str,
    zoom: ZoomParams | None = None,
) -> dict[int, list[Detection]]:
    """Detections (image_id -> xyxy boxes in original-image pixels) for `records`, batched by
    `args.batch_size` with `args.workers` loader processes; the second look when `zoom` is on."""
    loader = DataLoader(
        DigitDataset(list(records)), batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate
    )
    return predict(model, loader, device, desc=desc, zoom=zoom)


def read_sites(
    reader: tuple[DigitReader, ReaderMeta],
    records: Sequence[ImageRecord],
    detections: Detections,
    batch_size: int,
    detection_probs: dict[int, torch.Tensor] | None = None,
) -> dict[int, list[Detection]]:
    """image_id -> the digit sites the number is read from: `detections` (xyxy, original-image pixels)
    grouped and re-read by the reader on crops of each record's image (`models.reread`), or with
    `detection_probs` (image_id -> the reader's softmax on each detection's box, `read_records`)
    from those readings, as the service does with a rescorer."""
    model, meta = reader
    if detection_probs is not None:
        found = [list(detections.get(r.image_id, ())) for r in records]
        probs = [detection_probs[r.image_id] for r in records]
        return dict(
            zip([r.image_id for r in records], reread_detections(found, probs, meta.reread), strict=True)
        )

    def read(images: list[torch.Tensor], found: list[list[Detection]]) -> list[list[Detection]]:
        return reread_images(model, images, found, meta.reread, meta.crop)

    return _over_images(read, model, records, detections, batch_size, "reader")


def refine_records(
    refiner: tuple[BoxRefiner, RefinerMeta],
    records: Sequence[ImageRecord],
    detections: Detections,
    batch_size: int,
) -> dict[int, list[Detection]]:
    """image_id -> `detections` (xyxy, original-image pixels) with their boxes refined on crops of
    each record's image (`models.refiner`)."""
    model, meta = refiner

    def refine(images: list[torch.Tensor], found: list[list[Detection]]) -> list[list[Detection]]:
        return refine_images(model, images, found, meta.params)

    return _over_images(refine, model, records, detections, batch_size, "refiner")


def read_records(
    reader: tuple[DigitReader, ReaderMeta],
    records: Sequence[ImageRecord],
    detections: Detections,
    batch_size: int,
) -> dict[int, torch.Tensor]:
    """image_id -> the reader's softmax (FloatTensor[n, C]) on the crop of each of its `detections`'
    boxes (xyxy, original-image pixels), in order (`models.reread.read_boxes`)."""
    model, meta = reader

    def read(images: list[torch.Tensor], found: list[list[Detection]]) -> list[torch.Tensor]:
        return read_boxes(model, images, [[d.box_xyxy for d in f] for f in found], meta.crop)

    return _over_images(read, model, records, detections, batch_size, "reader")


def rescore_records(
    rescorer: Rescorer,
    records: Sequence[ImageRecord],
    detections: Detections,
    detection_probs: dict[int, torch.Tensor],
) -> dict[int, list[Detection]]:
    """image_id -> `detections` (refined, with a fit) with each one's `quality` set by the rescorer
    (`models.rescorer`), given the reader's softmax on each detection's box (`read_records`)."""
    found = [list(detections.get(r.image_id, ())) for r in records]
    probs = [detection_probs[r.image_id] for r in records]
    rescored = rescore_images(rescorer, found, [(r.width, r.height) for r in records], probs)
    return {r.image_id: d for r, d in zip(records, rescored, strict=True)}


def _over_images(
    step: Callable[[list[torch.Tensor], list[list[Detection]]], list[T]],
    model: nn.Module,
    records: Sequence[ImageRecord],
    detections: Detections,
    batch_size: int,
    desc: str,
) -> dict[int, T]:
    """`step` over the records' images (on `model`'s device) and detections, `batch_size` at a time."""
    device = next(model.parameters()).device
    out: dict[int, T] = {}
    for start in tqdm(range(0, len(records), batch_size), desc=desc, leave=False):
        chunk = records[start : start + batch_size]
        images = [load_image(r.path).to(device) for r in chunk]
        found = [list(detections.get(r.image_id, ())) for r in chunk]
        out.update({r.image_id: d for r, d in zip(chunk, step(images, found), strict=True)})
    return out


def add_param_args(p: argparse.ArgumentParser, defaults: Any) -> None:
    """One float flag per field of the dataclass instance `defaults` (`match_score` -> --match-score)."""
    for name, value in asdict(defaults).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=value)


def params_from_args(cls: type[P], args: argparse.Namespace) -> P:
    """The dataclass `cls` built from the flags `add_param_args` added."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})  # type: ignore[arg-type]


def write_annotations(out: Path, doc: dict[str, Any], report: dict[str, Any]) -> None:
    """Write a COCO json to `out` and its report (what was done, with what) to `out`.report.json, each
    all or nothing: a training run may read `out` as its annotations."""
    write_text(out, json.dumps(doc))
    write_text(out.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
