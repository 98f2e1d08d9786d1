"""Vet uncertain labels with a trained model: keep an image only where its boxes and the model agree.

    python -m training.vet --checkpoint runs/x/best --images ../shared/data/svhn-hw2/train \
        --annotations ../shared/data/svhn-hw2/train_noisy.json --out runs/vetted/train_noisy_vetted.json

SVHN's `train_noisy.json` holds labels that may belong to another photo. Such a label's boxes sit
where this photo has no digits (or miss digits it has), which a detector sees even when it cannot yet
name the digits. The check is therefore class-agnostic, so it does not keep only the images the model
already reads right:

- every labelled box is matched by a detection scoring >= `match_score` with IoU >= `match_iou`, and
- no confident detection (score >= `extra_score`) lies away from every labelled box (IoU < `extra_iou`).

Writes the kept images' COCO json (same categories, ids untouched) and a JSON report of the counts.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.assembly import Detection
from models.boxes import box_iou
from training import runner
from training.data import ImageRecord, load_coco_split
from training.exits import run_tool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VetParams:
    """Thresholds of the agreement check (scores in [0, 1], IoU in [0, 1])."""

    match_score: float = 0.3
    match_iou: float = 0.5
    extra_score: float = 0.8
    extra_iou: float = 0.3


def vet_reason(record: ImageRecord, detections: Sequence[Detection], params: VetParams) -> str:
    """Why `record`'s labels disagree with `detections` ("" when they agree).

    Boxes on both sides are [x1, y1, x2, y2] in original-image pixels; classes are ignored.
    """
    if not record.boxes:
        return "no labelled box"
    candidates = [d.box_xyxy for d in detections if d.score >= params.match_score]
    for box in record.boxes:
        if not any(box_iou(box.box_xyxy, c) >= params.match_iou for c in candidates):
            return "labelled box not detected"
    for det in detections:
        if det.score >= params.extra_score and all(
            box_iou(det.box_xyxy, b.box_xyxy) < params.extra_iou for b in record.boxes
        ):
            return "confident detection not labelled"
    return ""


def filter_coco(doc: dict[str, Any], keep_ids: set[int]) -> dict[str, Any]:
    """`doc` with only the images in `keep_ids` and their annotations; other keys are kept as they are."""
    return {
        **doc,
        "images": [im for im in doc["images"] if im["id"] in keep_ids],
        "annotations": [a for a in doc["annotations"] if a["image_id"] in keep_ids],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a model trained on trusted labels")
    p.add_argument("--images", required=True, type=Path, help="image folder the annotations refer to")
    p.add_argument("--annotations", required=True, type=Path, help="COCO json with uncertain labels")
    p.add_argument("--out", required=True, type=Path, help="where to write the vetted COCO json")
    runner.add_param_args(p, VetParams())
    runner.add_runner_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = runner.params_from_args(VetParams, args)
    model, meta, device = runner.load_prepared(args.checkpoint, args.device)
    records, _ = load_coco_split(args.images, args.annotations)
    detections = runner.predict_records(model, records, device, args, "vet labels")
    reasons: dict[str, int] = {}
    keep: set[int] = set()
    for record in records:
        reason = vet_reason(record, detections.get(record.image_id, ()), params)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            keep.add(record.image_id)
    report = {
        "annotations": str(args.annotations),
        "checkpoint": str(args.checkpoint),
        "weights_sha256": meta.weights_sha256,
        "params": asdict(params),
        "images": len(records),
        "kept": len(keep),
        "dropped": reasons,
    }
    runner.write_annotations(args.out, filter_coco(json.loads(args.annotations.read_text()), keep), report)
    print(f"kept {len(keep)} of {len(records)} images; dropped: {reasons}")
    return report


if __name__ == "__main__":
    run_tool(main)
