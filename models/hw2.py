"""The NYCU VRDL HW2 output formats, shared by the evaluator and the command line:
Task 1 `pred.json` (COCO detections) and Task 2 `pred.csv` (`image_id,pred_label`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.assembly import Detection
from models.atomic import write_text
from models.boxes import xywh_to_xyxy, xyxy_to_xywh
from models.labels import category_id_to_digit, digit_to_category_id

Detections = Mapping[int, Sequence[Detection]]  # image_id -> detections in original-image pixels


def image_ids_for(paths: Sequence[Path]) -> list[int]:
    """HW2 image ids for files: the numeric stem ("17.png" -> 17) when every stem is numeric and no two
    are the same number, else the 1-based position in the given order."""
    if paths and all(p.stem.isdigit() for p in paths) and len({int(p.stem) for p in paths}) == len(paths):
        return [int(p.stem) for p in paths]
    return list(range(1, len(paths) + 1))


def detections_to_coco(detections: Detections) -> list[dict[str, Any]]:
    """Task 1 `pred.json` rows: bbox [x, y, w, h] in pixels, category_id = digit + 1, score the
    detection's `ranking_score` (its score, times the refiner's fit estimate when there is one)."""
    rows = []
    for image_id in sorted(detections):
        for d in detections[image_id]:
            rows.append(
                {
                    "image_id": int(image_id),
                    "bbox": [round(v, 2) for v in xyxy_to_xywh(d.box_xyxy)],
                    "score": round(float(d.ranking_score), 5),
                    "category_id": digit_to_category_id(d.digit),
                }
            )
    return rows


def write_pred_json(path: Path, detections: Detections) -> None:
    """Task 1 `pred.json` (`detections_to_coco`), all or nothing: a file a submission may take whole."""
    write_text(path, json.dumps(detections_to_coco(detections)) + "\n")


def read_pred_json(path: Path) -> dict[int, list[Detection]]:
    """Task 1 `pred.json` (or any COCO results file) -> image_id -> detections, xyxy pixels, in file
    order, score as in the file (a ranking score where a fit head refined the boxes); images without
    a row are absent."""
    found: dict[int, list[Detection]] = {}
    for row in json.loads(path.read_text()):
        detection = Detection(
            xywh_to_xyxy(row["bbox"]), category_id_to_digit(int(row["category_id"])), float(row["score"])
        )
        found.setdefault(int(row["image_id"]), []).append(detection)
    return found


def write_pred_csv(path: Path, numbers: Mapping[int, int]) -> None:
    """Task 2 `pred.csv`: `image_id,pred_label` rows in image-id order, -1 where no digit was found;
    all or nothing, as `write_pred_json`."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["image_id", "pred_label"])
    for image_id in sorted(numbers):
        writer.writerow([image_id, numbers[image_id]])
    write_text(path, text.getvalue())


def read_pred_csv(path: Path) -> dict[int, int]:
    """`pred.csv` -> image_id -> predicted number (-1: no digit). ValueError when missing or malformed."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist (expected a Task 2 pred.csv)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return {int(r["image_id"]): int(r["pred_label"]) for r in rows}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected integer image_id,pred_label rows ({exc!r})") from exc
