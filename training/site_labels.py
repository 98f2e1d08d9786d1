"""Label the digit sites a detector finds in labelled images, to train the reader on the boxes it will be
shown (`models.reread`): a site on a labelled digit is that digit, a site on none is "no digit".

    python -m training.evaluate --checkpoint models/default --data ../shared/data/svhn-hw2 --split train \
        --out runs/eval-train --no-reader
    python -m training.reader --config configs/fast96-warm8.yaml --out runs/reader-sites \
        --site-detections runs/eval-train/pred.json

A site whose best box overlaps a labelled box by IoU >= `digit_iou` takes that box's digit; one that
overlaps every labelled box by less than `not_digit_iou` is no digit, unless it looks like a digit of
the number the label leaves out (`training.complete.row_mates` at `row_mate_score`: a confident
detection in the labelled digits' row, at their height); the sites in between are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.assembly import Detection
from models.boxes import BoxXYXY, box_iou
from models.hw2 import Detections
from models.reader import NOT_A_DIGIT
from models.reread import group_sites
from training.complete import CompleteParams, row_mates
from training.data import ImageRecord


@dataclass(frozen=True)
class SiteLabelParams:
    """Which sites are labelled and how (scores and IoUs in [0, 1])."""

    min_presence: float = 0.1
    site_iou: float = 0.5
    digit_iou: float = 0.5
    not_digit_iou: float = 0.3
    row_mate_score: float = 0.6


@dataclass(frozen=True)
class LabelledSite:
    """A site's best box ([x1, y1, x2, y2], original-image pixels) and its class: the digit 0-9 or
    `models.reader.NOT_A_DIGIT`."""

    box_xyxy: BoxXYXY
    label: int


def label_sites(
    record: ImageRecord, detections: Sequence[Detection], params: SiteLabelParams
) -> list[LabelledSite]:
    """The sites of `detections` (xyxy, `record`'s pixels) with presence >= `params.min_presence`,
    labelled against `record`'s boxes; ambiguous sites are left out."""
    likely_digits = CompleteParams(score=params.row_mate_score, max_iou=params.not_digit_iou)
    omitted = row_mates(record, detections, likely_digits)
    out: list[LabelledSite] = []
    for site in group_sites(detections, params.site_iou):
        if site.presence < params.min_presence:
            continue
        ious = [box_iou(site.box_xyxy, b.box_xyxy) for b in record.boxes]
        best = max(range(len(ious)), key=ious.__getitem__) if ious else -1
        if best >= 0 and ious[best] >= params.digit_iou:
            out.append(LabelledSite(site.box_xyxy, record.boxes[best].digit))
        elif (best < 0 or ious[best] < params.not_digit_iou) and not any(
            box_iou(site.box_xyxy, m.box_xyxy) >= params.site_iou for m in omitted
        ):
            out.append(LabelledSite(site.box_xyxy, NOT_A_DIGIT))
    return out


def labelled_sites(
    records: Sequence[ImageRecord], detections: Detections, params: SiteLabelParams
) -> list[tuple[Path, LabelledSite]]:
    """(image path, labelled site) for every record's sites; records without detections add none."""
    return [
        (r.path, site) for r in records for site in label_sites(r, detections.get(r.image_id, []), params)
    ]
