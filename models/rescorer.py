"""The rescorer: how good is each detection as a Task 1 answer, judged from its place among the
image's other detections, and its storage.

Why: COCO mAP ranks every box of a digit class across all images, so a box's ranking score should say
how likely it is the right digit *and* how tightly it fits. The detector's score and the box
refiner's fit (`models.refiner`) each see one box; with the labels as oracle, ranking the shipped
boxes by their true quality would lift mAP from 0.47 to ~0.53 (model card, experiment 18). Much of
what tells a good box from a poor one is in its context: a rival class scored on the same place, a
higher-scored box of the same digit beside it, a height unlike the number's other digits, a box
against the image's edge, a reader (`models.reader`) that sees another digit in the box's crop.
The rescorer is a small ensemble of MLPs on such features (`detection_features`: numbers, well
under a millisecond per image, plus the reader's opinion of every box, which the digit sites then
reuse) that estimates a detection's *quality*: the share of COCO's IoU thresholds (0.50, 0.55,
..., 0.95) at which it is a true positive (the right digit, overlapping its label at least that
much). Task 1 then ranks boxes by sqrt(score x fit x quality) (`Detection.ranking_score`); digits,
boxes and the number read are unchanged (model card, experiment 25).

A rescorer lives in a checkpoint folder as `rescorer.safetensors` plus `rescorer.json` (shape,
sha256 of the weights, how it was trained). It is applied after the box refiner, whose fit is one of
its features (a detection without a fit gets no quality), and needs the checkpoint's reader.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.assembly import Detection
from models.boxes import box_height, box_iou
from models.checkpoint import load_part, resolve_checkpoint_dir, save_part
from models.labels import NUM_DIGITS

RESCORER = "rescorer"  # the part's name in a checkpoint folder
RESCORER_WEIGHTS = f"{RESCORER}.safetensors"
RESCORER_META = f"{RESCORER}.json"
IOU_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))  # COCO's mAP@[.5:.95]
CONFIDENT = 0.6  # the number assembly's score threshold: digits at or above it make the number
SITE_IOU = 0.5  # boxes overlapping at least this much are one place (as `models.reread`'s sites)
FEATURE_NAMES = (
    "logit_score",
    "logit_fit",
    "log_width",
    "log_height",
    "log_aspect",  # log(height / width)
    "log_image_height",
    "log_image_width",
    "height_share",  # box height / image height
    "centre_y",  # box centre / image height
    "centre_x",  # box centre / image width
    "logit_rival",  # best score of another digit on the same place (IoU >= SITE_IOU)
    "logit_presence",  # the place's scores summed (at most 1)
    "tops_its_place",  # 1 when no box on the same place scores higher
    "log_rank",  # log(1 + the detection's rank by score in its image)
    "confident_count",  # detections scoring >= CONFIDENT in the image
    "log_height_vs_number",  # log(height / median height of the confident detections)
    "row_offset",  # (centre y - their median centre y) / their median height
    "same_digit_overlap",  # largest IoU with a higher-scored box of the same digit
    "any_overlap",  # largest IoU with any higher-scored box
    "left_margin",  # distance to the image's left edge in box widths, at most 1
    "right_margin",  # ... to its right edge
    *(f"digit_{d}" for d in range(NUM_DIGITS)),
    "logit_reader_digit",  # the reader's probability of the detection's digit, on the box's crop
    "reader_top",  # the reader's highest probability there
    "reader_agrees",  # 1 when that is the detection's digit
    "reader_margin",  # its highest minus its second-highest probability
)


class RescorerError(RuntimeError):
    """A rescorer folder is incomplete, malformed, or does not match its recorded hash."""


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def detection_features(
    detections: Sequence[Detection], width: int, height: int, reader_probs: torch.Tensor
) -> torch.Tensor:
    """FloatTensor[N, len(FEATURE_NAMES)]: the features of each of an image's `detections` (xyxy boxes
    in its pixels, every one with a `fit`), in order; `width` x `height` is the image's size in pixels
    and `reader_probs` (FloatTensor[N, C], C >= 10) the reader's softmax on each box's crop
    (`models.reread.read_boxes`; a "no digit" column is ignored). The number's reference (median
    height and row) comes from the detections scoring >= CONFIDENT, or from the best one when none
    does. Raises ValueError for a detection without a fit or a reader row count that differs."""
    if any(d.fit is None for d in detections):
        raise ValueError("every detection needs a fit (a box refiner with a fit head) to be rescored")
    if len(reader_probs) != len(detections):
        raise ValueError(f"{len(reader_probs)} reader rows for {len(detections)} detections")
    if not detections:
        return torch.zeros((0, len(FEATURE_NAMES)))
    n = len(detections)
    confident_count = float(sum(d.score >= CONFIDENT for d in detections))
    confident = [d for d in detections if d.score >= CONFIDENT] or [max(detections, key=lambda d: d.score)]
    ref_height = max(statistics.median_high([box_height(d.box_xyxy) for d in confident]), 1e-3)
    ref_row = statistics.median_high([(d.box_xyxy[1] + d.box_xyxy[3]) / 2 for d in confident])
    order = sorted(range(n), key=lambda i: -detections[i].score)
    rank = {i: r for r, i in enumerate(order)}
    ious = [[0.0] * n for _ in range(n)]  # box_iou is symmetric: each pair once
    for i in range(n):
        for j in range(i + 1, n):
            ious[i][j] = ious[j][i] = box_iou(detections[i].box_xyxy, detections[j].box_xyxy)
    rows = []
    for i, d in enumerate(detections):
        x1, y1, x2, y2 = d.box_xyxy
        w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
        others = [(ious[i][j], e) for j, e in enumerate(detections) if j != i]
        place = [e for iou, e in others if iou >= SITE_IOU]
        rival = max((e.score for e in place if e.digit != d.digit), default=0.0)
        presence = min(d.score + sum(e.score for e in place), 1.0)
        higher = [(iou, e) for iou, e in others if e.score > d.score]
        rows.append(
            [
                _logit(d.score),
                _logit(d.fit),  # type: ignore[arg-type]  # checked above
                math.log(w),
                math.log(h),
                math.log(h / w),
                math.log(max(height, 1)),
                math.log(max(width, 1)),
                h / height,
                (y1 + y2) / 2 / height,
                (x1 + x2) / 2 / width,
                _logit(rival),
                _logit(presence),
                float(all(e.score <= d.score for e in place)),
                math.log1p(rank[i]),
                confident_count,
                math.log(h / ref_height),
                ((y1 + y2) / 2 - ref_row) / ref_height,
                max((iou for iou, e in higher if e.digit == d.digit), default=0.0),
                max((iou for iou, _ in higher), default=0.0),
                min(x1 / w, 1.0),
                min((width - x2) / w, 1.0),
            ]
            + [float(d.digit == k) for k in range(NUM_DIGITS)]
        )
    return torch.cat([torch.tensor(rows, dtype=torch.float32), _reader_features(detections, reader_probs)], 1)


def _reader_features(detections: Sequence[Detection], reader_probs: torch.Tensor) -> torch.Tensor:
    """FloatTensor[N, 4]: the reader columns of FEATURE_NAMES."""
    probs = reader_probs[:, :NUM_DIGITS].float()
    probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
    digits = torch.tensor([d.digit for d in detections])
    own = probs[torch.arange(len(detections)), digits].clamp(1e-4, 1 - 1e-4)
    top2 = probs.topk(2, dim=1).values
    agrees = (probs.argmax(dim=1) == digits).float()
    return torch.stack([own.logit(), top2[:, 0], agrees, top2[:, 0] - top2[:, 1]], dim=1)


def quality_target(
    detection: Detection, labels: Sequence[tuple[tuple[float, float, float, float], int]]
) -> float:
    """What the rescorer learns: the share of IOU_THRESHOLDS at which `detection` is a true positive,
    i.e. its best IoU with a label (xyxy box, digit) of the same digit reaches the threshold; 0 when
    no label has its digit. (COCO's matching also lets a label match one box only; ignored here.)"""
    best = max(
        (box_iou(detection.box_xyxy, box) for box, digit in labels if digit == detection.digit), default=0.0
    )
    return sum(best >= t for t in IOU_THRESHOLDS) / len(IOU_THRESHOLDS)


class Rescorer(nn.Module):
    """An ensemble of `members` MLPs (features -> `hidden` -> `hidden` -> 1, ReLU) on standardised
    features. Input FloatTensor[N, F] (`detection_features`, F = `features`); output FloatTensor[N]:
    the members' mean estimated quality in [0, 1]. `logits` gives each member's logits,
    FloatTensor[E, N], for FloatTensor[N, F] or, one set of rows per member, FloatTensor[E, N, F]
    (training)."""

    mean: torch.Tensor  # FloatTensor[F] buffers: the standardisation
    std: torch.Tensor

    def __init__(self, features: int = len(FEATURE_NAMES), hidden: int = 16, members: int = 5) -> None:
        super().__init__()
        self.features, self.hidden, self.members = features, hidden, members
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        shapes = [(features, hidden), (hidden, hidden), (hidden, 1)]
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(members, i, o)) for i, o in shapes])
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(members, 1, o)) for _, o in shapes])
        for w, b in zip(self.weights, self.biases, strict=True):  # as nn.Linear initialises itself
            bound = 1 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Standardise inputs by the mean and standard deviation of FloatTensor[N, F] `features`."""
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.mean) / self.std
        if h.dim() == 2:
            h = h.expand(self.members, -1, -1)  # [E, N, F]
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.weights) - 1:
                h = h.relu()
        return h.squeeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).sigmoid().mean(0)


@torch.inference_mode()
def rescore_images(
    rescorer: Rescorer,
    detections: Sequence[Sequence[Detection]],
    sizes: Sequence[tuple[int, int]],
    reader_probs: Sequence[torch.Tensor],
) -> list[list[Detection]]:
    """Every detection of each image, in order, with its `quality` set (boxes, digits and scores
    unchanged): one rescorer call for the batch. `sizes` are the images' (width, height) in pixels,
    `reader_probs` per image the reader's softmax on each detection's crop (FloatTensor[n, C]). An
    image with a detection that has no fit is returned as it is."""
    rows = [
        detection_features(dets, w, h, probs) if all(d.fit is not None for d in dets) else None
        for dets, (w, h), probs in zip(detections, sizes, reader_probs, strict=True)
    ]
    stacked = [r for r in rows if r is not None and len(r)]
    if not stacked:
        return [list(dets) for dets in detections]
    qualities = iter(rescorer(torch.cat(stacked)).tolist())
    return [
        list(dets) if r is None else [replace(d, quality=next(qualities)) for d in dets]
        for dets, r in zip(detections, rows, strict=True)
    ]


@dataclass(frozen=True)
class RescorerMeta:
    """What `rescorer.json` says."""

    hidden: int
    members: int
    feature_names: tuple[str, ...]
    sha256: str
    dtype: str = "float32"
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RescorerMeta:
        names = tuple(str(n) for n in doc["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(f"the rescorer was trained on other features: {names}")
        return cls(
            hidden=int(doc["hidden"]),
            members=int(doc["members"]),
            feature_names=names,
            sha256=str(doc["sha256"]),
            dtype=str(doc.get("dtype", "float32")),
            metrics=dict(doc.get("metrics") or {}),
        )


def save_rescorer(
    directory: str | Path, rescorer: Rescorer, *, metrics: dict[str, Any] | None = None
) -> RescorerMeta:
    """Write `rescorer`'s weights (float32: a few thousand numbers) and `rescorer.json` into
    `directory` (created if needed)."""

    def meta(sha256: str) -> RescorerMeta:
        return RescorerMeta(
            rescorer.hidden, rescorer.members, FEATURE_NAMES, sha256, "float32", metrics or {}
        )

    return save_part(directory, RESCORER, rescorer, "float32", meta)


def has_rescorer(directory: str | Path) -> bool:
    """True when `directory` holds a rescorer (its `rescorer.json`)."""
    return (Path(directory) / RESCORER_META).is_file()


def load_rescorer(directory: str | Path) -> tuple[Rescorer, RescorerMeta]:
    """Verify and load the rescorer in `directory`: eval mode, on the CPU, where its input is built,
    whatever device the other parts run on. Raises RescorerError."""
    return load_part(
        directory,
        RESCORER,
        RescorerMeta.from_dict,
        lambda m: Rescorer(len(m.feature_names), m.hidden, m.members),
        RescorerError,
    )


def load_checkpoint_rescorer(checkpoint: str | Path) -> tuple[Rescorer, RescorerMeta] | None:
    """The rescorer in a checkpoint (or rescorer) folder (`load_rescorer`), or None when it has none."""
    folder = resolve_checkpoint_dir(checkpoint)
    return load_rescorer(folder) if has_rescorer(folder) else None


def copy_rescorer(source: str | Path, directory: str | Path) -> RescorerMeta:
    """Verify the rescorer in `source` and write it into `directory` (a checkpoint folder, say)."""
    rescorer, meta = load_rescorer(source)
    return save_rescorer(directory, rescorer, metrics=meta.metrics)
