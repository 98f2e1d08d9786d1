"""The checkpoint's pipeline as the service runs it, over a split's photos: detector (int8 on the CPU
where the checkpoint has the ranges), box refiner, reader and rescorer, the second look and the
search of large photos (only where the first reading is doubtful, when the checkpoint's verifier
gates it), and the photo steps taken before reading. `training.evaluate` and `training.verifier` read
splits through it.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import FasterRCNN

from models.assembly import AssemblyParams, Detection, assemble_number
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
from models.verifier import NumberVerifier, gate_verifier, pipeline_identity, reading_p_correct
from models.zoom import ZoomParams, detect_alone, first_reading, input_sizes, locates, search_again
from training.data import ImageRecord, load_image, split_records
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
    gate = gate_verifier(resolve_checkpoint_dir(args.checkpoint), identity) if zoom.gated else None
    if gate is None:
        (detections, sites), searched_again = pipeline.read(photos, zoom), None
    else:
        detections, sites, searched_again = read_gated(pipeline, photos, zoom, params, gate[0])
    info = {
        "checkpoint": str(args.checkpoint),
        "weights_sha256": meta.weights_sha256,
        "split": args.split,
        "data": str(args.data),
        "assembly": asdict(params),
        "zoom": asdict(zoom),
        "searched_again": searched_again,  # image ids, where located photos' search is gated
        **photo.settings(),
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
