"""The checkpoint's pipeline as the service runs it, over a split's photos: detector (int8 on the CPU
where the checkpoint has the ranges), box refiner, reader and rescorer, the second look and the
search of large photos (only where the first reading is doubtful, when the checkpoint's verifier
gates it), the photo steps taken before reading, and the readings made again of photos whose digits
come out narrow or squat (`models.widen`). `training.evaluate` and `training.verifier` read
splits through it.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection import FasterRCNN

from models.assembly import AssemblyParams, Detection, assemble_number
from models.boxes import scale_xyxy
from models.checkpoint import resolve_checkpoint_dir
from models.host import cpu_info
from models.hw2 import Detections
from models.inference import resolve_device
from models.int8 import int8_parts
from models.optimize import load_prepared_detector, load_prepared_reader, load_prepared_refiner
from models.photo import Step, photo_params
from models.reader import DigitReader, ReaderMeta
from models.refiner import BoxRefiner, RefinerMeta
from models.rescorer import Rescorer, RescorerMeta, load_checkpoint_rescorer
from models.verifier import (
    NumberVerifier,
    current_verifier,
    gate_verifier,
    pipeline_identity,
    reading_p_correct,
)
from models.widen import WidenParams, next_factor, prefer, widen, widen_params
from models.zoom import ZoomParams, detect_alone, first_reading, input_sizes, locates, search_again
from training.data import ImageRecord, load_image, read_rgb, split_records
from training.runner import (
    predict_records,
    prepared_records,
    read_records,
    read_sites,
    refine_records,
    rescore_records,
    zoom_from,
)

Found = dict[int, list[Detection]]  # image_id -> xyxy boxes in image pixels

#: `models.photo`'s step -> the key of `evaluation.json` that lists the image ids it changed
STEP_LISTS: dict[Step, str] = {
    "balance": "colour_balanced",
    "levels": "levels_stretched",
    "grain": "grain_smoothed",
    "focus": "sharpened",
}


@dataclass(frozen=True)
class PipelineRun:
    """The served pipeline's outputs on a split (`run_pipeline`): Task 1 `detections` and the digit
    `sites` the numbers are read from (xyxy boxes in image pixels), the assembly thresholds, what
    ran (`info`, evaluation.json's content) and `identity` (`models.verifier.pipeline_identity`)."""

    records: list[ImageRecord]
    labelled: bool
    detections: Detections
    sites: Detections | None
    params: AssemblyParams
    info: dict[str, Any]
    identity: dict[str, Any]

    @property
    def read(self) -> Detections:
        """What the numbers are read from: the sites, or the detections without a reader."""
        return self.detections if self.sites is None else self.sites


@dataclass(frozen=True)
class Pipeline:
    """The checkpoint's parts on `device`, prepared as served; `args` holds the evaluator's loader
    settings (`batch_size`, `workers`) and the split's name."""

    model: FasterRCNN
    device: torch.device
    args: argparse.Namespace
    refiner: tuple[BoxRefiner, RefinerMeta] | None
    reader: tuple[DigitReader, ReaderMeta] | None
    rescorer: tuple[Rescorer, RescorerMeta] | None

    def read(self, chosen: Sequence[ImageRecord], zoom: ZoomParams) -> tuple[Found, Found | None]:
        """Task 1 detections and the digit sites (None without a reader) of `chosen`'s images, the
        detector's second look and search set by `zoom`."""
        args = self.args
        found = predict_records(self.model, chosen, self.device, args, f"evaluate {args.split}", zoom)
        if self.refiner:
            found = refine_records(self.refiner, chosen, found, args.batch_size)
        probs = (
            read_records(self.reader, chosen, found, args.batch_size)
            if self.reader and self.rescorer
            else None
        )
        if self.rescorer and probs is not None:
            found = rescore_records(self.rescorer[0], chosen, found, probs)
        sites = read_sites(self.reader, chosen, found, args.batch_size, probs) if self.reader else None
        return found, sites

    def parts(self) -> dict[str, Any]:
        """The metadata of the parts after the detector (None for each one left out)."""
        return {
            "reader": self.reader[1].to_dict() if self.reader else None,
            "refiner": self.refiner[1].to_dict() if self.refiner else None,
            "rescorer": self.rescorer[1].to_dict() if self.rescorer else None,
        }

    def int8_parts(self) -> list[str]:
        """The names of the parts that run in int8 (`models.int8.int8_parts`)."""
        return int8_parts(
            {
                "detector": self.model,
                "refiner": self.refiner and self.refiner[0],
                "reader": self.reader and self.reader[0],
            }
        )


def run_pipeline(args: argparse.Namespace) -> PipelineRun:
    """The checkpoint's pipeline as served, with `args`' settings (`training.evaluate.build_parser`),
    over the split's images (the narrow-contrast ones stretched, the grainy ones smoothed, and the
    blurred ones sharpened where `--sharpen-gate` asks, in a temporary folder:
    `training.runner.prepared_records`)."""
    with tempfile.TemporaryDirectory(prefix="digitserve-photos-") as folder:
        return _run_pipeline(args, Path(folder))


def _run_pipeline(args: argparse.Namespace, folder: Path) -> PipelineRun:
    """`run_pipeline`, the prepared photos written to `folder`."""
    device = resolve_device(args.device)
    use_int8 = not args.no_int8  # the detector, refiner and reader as served
    model, meta, int8 = load_prepared_detector(args.checkpoint, device, use_int8=use_int8)
    params, zoom = assembly_params(args, meta.assembly), zoom_from(args, meta.zoom)
    records, labelled = split_records(args.data, args.split, args.images, args.annotations)
    photo = photo_params(args.grain_threshold, args.sharpen_gate, args.levels_gate, args.balance_gate)
    photos, steps = prepared_records(records, photo, folder)  # what each reader reads
    pipeline = load_pipeline(args, model, device, use_int8)
    identity = pipeline_identity(meta.weights_sha256, params, zoom, pipeline.parts())
    directory = resolve_checkpoint_dir(args.checkpoint)
    gate = gate_verifier(directory, identity) if zoom.gated else None
    detections, sites, searched_again = read_photos(pipeline, photos, zoom, params, gate)
    widen = widen_params(args.widen_gate, args.squat_gate)
    widened: dict[int, float] = {}
    if widen.on:
        verifier = current_verifier(directory, identity)
        reread = Rereader(pipeline, zoom, params, gate, verifier[0] if verifier else None)
        detections, sites, widened = read_widened(reread, photos, detections, sites, widen, folder)
    info = {
        "checkpoint": str(args.checkpoint),
        "weights_sha256": meta.weights_sha256,
        "split": args.split,
        "data": str(args.data),
        "assembly": asdict(params),
        "zoom": asdict(zoom),
        "searched_again": searched_again,  # image ids, where located photos' search is gated
        **photo.settings(),
        "widen": asdict(widen),
        "widened": [[i, round(f, 4)] for i, f in sorted(widened.items())],  # image id, how far; kept ones
        # the image ids each step changed, under "colour_balanced", "levels_stretched", ...
        **{key: [i for i, done in steps.items() if step in done] for step, key in STEP_LISTS.items()},
        **pipeline.parts(),
        "int8": int8.to_dict() if int8 else None,
        "int8_parts": pipeline.int8_parts(),
        "device": str(device),
        "host": cpu_info().describe(),  # the int8 figures depend a little on the CPU
    }
    return PipelineRun(records, labelled, detections, sites, params, info, identity)


def assembly_params(args: argparse.Namespace, checkpoint: AssemblyParams) -> AssemblyParams:
    """The checkpoint's assembly thresholds with `--score-threshold` and `--iou-threshold` where given,
    and every number read left to right with `--left-to-right`."""
    params = checkpoint
    if args.score_threshold is not None:
        params = replace(params, score_threshold=args.score_threshold)
    if args.iou_threshold is not None:
        params = replace(params, iou_threshold=args.iou_threshold)
    if args.left_to_right:
        params = replace(params, read_columns=False)
    return params


def load_pipeline(
    args: argparse.Namespace, model: FasterRCNN, device: torch.device, use_int8: bool
) -> Pipeline:
    """`model` with the checkpoint's refiner, reader and rescorer as served, each but where `args`
    leaves it out (`--no-refiner`, `--no-reader`, `--no-rescorer`; the rescorer needs the other two)."""
    refiner = None if args.no_refiner else load_prepared_refiner(args.checkpoint, device, use_int8=use_int8)
    reader = None if args.no_reader else load_prepared_reader(args.checkpoint, device, use_int8=use_int8)
    rescorer = (
        load_checkpoint_rescorer(args.checkpoint) if refiner and reader and not args.no_rescorer else None
    )
    return Pipeline(model, device, args, refiner, reader, rescorer)


def read_photos(
    pipeline: Pipeline,
    photos: Sequence[ImageRecord],
    zoom: ZoomParams,
    params: AssemblyParams,
    gate: tuple[NumberVerifier, Any] | None,
) -> tuple[Found, Found | None, list[int] | None]:
    """Detections, sites and the ids of the photos searched again (None where the search is not gated
    by a verifier, `gate`): `read_gated` with one, else every photo read with `zoom` as it is."""
    if gate is None:
        detections, sites = pipeline.read(photos, zoom)
        return detections, sites, None
    return read_gated(pipeline, photos, zoom, params, gate[0])


@dataclass(frozen=True)
class Rereader:
    """What reading a photo again takes: the `pipeline`, its `zoom` and assembly `params`, the `gate`
    verifier of the search (None: not gated) and the `verifier` that judges a reading (None: none
    holds)."""

    pipeline: Pipeline
    zoom: ZoomParams
    params: AssemblyParams
    gate: tuple[NumberVerifier, Any] | None
    verifier: NumberVerifier | None

    def judged(self, read: Sequence[Detection], detections: Sequence[Detection]) -> tuple[bool, float | None]:
        """Whether the sites `read` make a number, and `verifier`'s p_correct of it (None without one)."""
        number = assemble_number(read, self.params)
        if self.verifier is None:
            return number.value >= 0, None
        return number.value >= 0, reading_p_correct(self.verifier, number, read, detections)


def read_widened(
    reread: Rereader,
    photos: Sequence[ImageRecord],
    detections: Found,
    sites: Found | None,
    params: WidenParams,
    folder: Path,
) -> tuple[Found, Found | None, dict[int, float]]:
    """`detections` and `sites` (those of `photos` as read) with each photo whose digits came out
    narrow read again widened, or squat narrowed, as the service reads it
    (`service.predictor.Predictor._widened`, `models.widen`): up to `params.rounds` times, the photo
    resized in width by `next_factor` from its last reading and written to `folder` as a PNG, read as
    `read_photos` reads, its boxes scaled back and kept where `prefer` holds the reading likelier
    right. Also image_id -> the factor of each reading made again and kept (under 1: narrowed)."""
    detections, sites = dict(detections), None if sites is None else dict(sites)
    numbers_from = detections if sites is None else sites
    last = {r.image_id: numbers_from.get(r.image_id, []) for r in photos}
    judged: dict[int, tuple[bool, float | None]] = {}  # the kept reading's, worked out where needed
    factors = {r.image_id: 1.0 for r in photos}
    kept: dict[int, float] = {}
    for round_ in range(params.rounds):
        todo = {
            r.image_id: factor
            for r in photos
            if (factor := next_factor(last[r.image_id], factors[r.image_id], params)) is not None
        }
        if not todo:
            break
        wide = [_widened_record(r, todo[r.image_id], folder, round_) for r in photos if r.image_id in todo]
        again, again_sites, _ = read_photos(reread.pipeline, wide, reread.zoom, reread.params, reread.gate)
        for image_id, factor in todo.items():
            found = _scaled(again.get(image_id, []), 1.0 / factor)
            read = found if again_sites is None else _scaled(again_sites.get(image_id, []), 1.0 / factor)
            last[image_id], factors[image_id] = read, factor
            read_p = reread.judged(read, found)
            if image_id not in judged:  # the reading as it is, the first time the photo is widened
                judged[image_id] = reread.judged(numbers_from.get(image_id, []), detections.get(image_id, []))
            if prefer(read_p[1], judged[image_id][1], read_p[0], judged[image_id][0]):
                judged[image_id], detections[image_id], kept[image_id] = read_p, found, factor
                if sites is not None:
                    sites[image_id] = read
    return detections, sites, kept


def _widened_record(record: ImageRecord, factor: float, folder: Path, round_: int) -> ImageRecord:
    """`record`'s photo widened by `factor` (`models.widen.widen`), written to `folder` as a PNG, and a
    record of it (no boxes)."""
    pixels = widen(np.ascontiguousarray(read_rgb(record.path).permute(1, 2, 0).numpy()), factor)
    path = folder / f"{record.image_id}-widened-{round_}.png"
    Image.fromarray(pixels).save(path)
    return replace(record, path=path, width=int(pixels.shape[1]), boxes=())


def _scaled(found: Sequence[Detection], sx: float) -> list[Detection]:
    """`found` with every box's x multiplied by `sx`."""
    return [replace(d, box_xyxy=scale_xyxy(d.box_xyxy, sx, 1.0)) for d in found]


def read_gated(
    pipeline: Pipeline,
    photos: Sequence[ImageRecord],
    zoom: ZoomParams,
    params: AssemblyParams,
    verifier: NumberVerifier,
) -> tuple[Found, Found | None, list[int]]:
    """Detections, sites and the ids of the photos searched: all `photos` read without the search of
    located large photos (`models.zoom.first_reading`), then the large ones whose number `verifier`
    doubts (`models.zoom.search_again`) and whose first pass locates a digit read again with it, as
    the service reads them."""
    detections, sites = pipeline.read(photos, first_reading(zoom))
    numbers_from = detections if sites is None else sites
    min_size, max_size = input_sizes(pipeline.model)
    # `locates` last: the first pass is run again only for the large photos read doubtfully
    doubtful = [
        r
        for r in photos
        if search_again(
            r.height,
            r.width,
            min_size,
            max_size,
            zoom,
            True,
            _p_correct(verifier, params, numbers_from.get(r.image_id, []), detections, r.image_id),
        )
        and _first_pass_locates(pipeline.model, r, zoom, pipeline.device)
    ]
    if doubtful:
        again, again_sites = pipeline.read(doubtful, zoom)
        detections.update(again)
        if sites is not None and again_sites is not None:
            sites.update(again_sites)
    return detections, sites, [r.image_id for r in doubtful]


def _first_pass_locates(
    model: FasterRCNN, record: ImageRecord, zoom: ZoomParams, device: torch.device
) -> bool:
    """Whether the detector's first pass over `record`'s image locates a digit (`models.zoom.locates`;
    where it does not, the search ran in the first reading already)."""
    with torch.inference_mode():
        return locates(detect_alone(model, load_image(record.path).to(device)), zoom)


def _p_correct(
    verifier: NumberVerifier,
    params: AssemblyParams,
    read: Sequence[Detection],
    detections: Detections,
    image_id: int,
) -> float | None:
    """`verifier`'s p_correct of the number assembled from one image's `read` sites (None when empty)."""
    return reading_p_correct(verifier, assemble_number(read, params), read, detections.get(image_id, []))
