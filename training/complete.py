"""Complete labels that leave out digits of the number: add a trained model's confident row-mates.

    python -m training.complete --checkpoint models/default --images ../shared/data/svhn-hw2/train \
        --annotations ../shared/data/svhn-hw2/train.json --out runs/complete/train_completed.json

Some SVHN photos are labelled with only part of the number they show (a "2" on a photo of 242, "25" on
125): 34 of the shipped model's 147 validation misreads are such images (by eye; model card). In
training, such a digit is background, which teaches the detector to doubt real digits. This adds, as
a pseudo-label, each detection that is confidently a digit of the labelled number and is not labelled:

- score >= `score`, IoU < `max_iou` with every labelled box,
- height within [`min_height_ratio`, `max_height_ratio`] x the labelled digits' median height,
- at least `min_row_overlap` of its height inside the labelled digits' vertical extent, and
- at most `max_gap` x that median height left or right of the labelled digits.

Labelled boxes are never changed or removed. Added annotations carry `"pseudo": true`, the detection's
`score` and ids after the file's largest one. Writes the completed COCO json and a JSON report next
to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.assembly import AssemblyParams, Detection, deduplicate
from models.boxes import box_iou
from training import runner
from training.data import ImageRecord, load_coco_split
from training.exits import run_tool


@dataclass(frozen=True)
class CompleteParams:
    """When a detection counts as an unlabelled digit of the labelled number (ratios of the labelled
    digits' median height, except `score` and `max_iou`, which are in [0, 1])."""

    score: float = 0.9
    max_iou: float = 0.2
    min_height_ratio: float = 0.7
    max_height_ratio: float = 1.4
    min_row_overlap: float = 0.6
    max_gap: float = 1.0


def row_mates(
    record: ImageRecord, detections: Sequence[Detection], params: CompleteParams
) -> list[Detection]:
    """Detections that look like digits of `record`'s number its labels leave out, best score first,
    with duplicates among them dropped by the reader's own rule (`models.assembly.deduplicate`). Boxes
    on both sides are [x1, y1, x2, y2] in original-image pixels."""
    if not record.boxes:
        return []
    labelled = [b.box_xyxy for b in record.boxes]
    height = statistics.median(b[3] - b[1] for b in labelled)
    top, bottom = min(b[1] for b in labelled), max(b[3] for b in labelled)
    left, right = min(b[0] for b in labelled), max(b[2] for b in labelled)
    found: list[Detection] = []
    for det in detections:
        x1, y1, x2, y2 = det.box_xyxy
        h = y2 - y1
        if det.score < params.score or h <= 0:
            continue
        if any(box_iou(det.box_xyxy, b) >= params.max_iou for b in labelled):
            continue
        if not params.min_height_ratio * height <= h <= params.max_height_ratio * height:
            continue
        if max(0.0, min(y2, bottom) - max(y1, top)) < params.min_row_overlap * h:
            continue
        if max(left - x2, x1 - right, 0.0) > params.max_gap * height:
            continue
        found.append(det)
    return deduplicate(found, AssemblyParams())


def add_pseudo_labels(doc: dict[str, Any], added: dict[int, list[Detection]]) -> dict[str, Any]:
    """`doc` with one COCO annotation per detection in `added` (image_id -> detections), appended after
    the original ones: `bbox` [x, y, w, h], `category_id` = digit + 1, `"pseudo": true`."""
    next_id = max((a["id"] for a in doc["annotations"]), default=0) + 1
    extra = []
    for image_id in sorted(added):
        for det in added[image_id]:
            x1, y1, x2, y2 = det.box_xyxy
            extra.append(
                {
                    "id": next_id,
                    "image_id": image_id,
                    "category_id": det.digit + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "pseudo": True,
                    "score": round(det.score, 4),
                }
            )
            next_id += 1
    return {**doc, "annotations": [*doc["annotations"], *extra]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a trained model (its second look is used if on)")
    p.add_argument("--images", required=True, type=Path, help="image folder the annotations refer to")
    p.add_argument("--annotations", required=True, type=Path, help="COCO json to complete")
    p.add_argument("--out", required=True, type=Path, help="where to write the completed COCO json")
    runner.add_param_args(p, CompleteParams())
    runner.add_runner_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = runner.params_from_args(CompleteParams, args)
    model, meta, device = runner.load_prepared(args.checkpoint, args.device)
    records, _ = load_coco_split(args.images, args.annotations)
    detections = runner.predict_records(model, records, device, args, "complete labels", meta.zoom)
    added = {r.image_id: row_mates(r, detections.get(r.image_id, ()), params) for r in records}
    added = {k: v for k, v in added.items() if v}
    report = {
        "annotations": str(args.annotations),
        "checkpoint": str(args.checkpoint),
        "weights_sha256": meta.weights_sha256,
        "params": asdict(params),
        "images": len(records),
        "images_completed": len(added),
        "boxes_added": sum(len(v) for v in added.values()),
        "completed_image_ids": sorted(added),
    }
    completed = add_pseudo_labels(json.loads(args.annotations.read_text()), added)
    runner.write_annotations(args.out, completed, report)
    print(f"added {report['boxes_added']} boxes to {len(added)} of {len(records)} images")
    return report


if __name__ == "__main__":
    run_tool(main)
