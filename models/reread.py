"""A second opinion on each digit before the number is read: group the detector's boxes into digit
sites, let a small crop classifier (the "reader") look at each site in the original pixels, and mix
its opinion with the detector's.

Why: of the validation digits the detector localises, its top class is right for 94.7 %; a crop
classifier trained on the same boxes is right about as often (94.5-95.8 % in the experiments) but on
other digits, so the two together read more numbers (issue #4, experiment 15 in the model card). A
site's presence is the sum of its class scores, so a digit whose score the detector splits between
two classes is not lost.

A reader trained with an 11th class, "no digit" (on the detector's own false boxes,
`training.site_labels`), also judges whether a site is a digit at all: letters beside a number ("78
At/m", "N°53") are read as digits by the detector alone.

The number-assembly rule (`models.assembly`) runs unchanged on the sites this module returns; the
detections themselves (Task 1, COCO boxes) are not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

from models.assembly import Detection
from models.boxes import BoxXYXY, box_iou, scale_xyxy
from models.labels import NUM_DIGITS


@dataclass(frozen=True)
class CropSpec:
    """How a digit is cut out: a square of `context` x the box's longer side around its centre,
    resized to `size` x `size` px."""

    size: int = 32  # the shipped reader's
    context: float = 1.3


@dataclass(frozen=True)
class RereadParams:
    """How the two opinions are mixed: class probabilities ~ detector^w x reader^(1 - w) with
    `detector_weight` w (1 = the detector alone). Boxes overlapping the site's best box by IoU >=
    `site_iou` are one site. Sites whose presence is under `min_presence` are not shown to the reader
    and keep the detector's opinion. A reader with a "no digit" output also judges whether a site is a
    digit at all: the site's score becomes presence^p x (1 - P(no digit))^(1 - p), with
    `presence_weight` p; for a reader without one, the score is the presence."""

    detector_weight: float = 0.7
    site_iou: float = 0.5
    min_presence: float = 0.6
    presence_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("detector_weight", "site_iou", "min_presence", "presence_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class DigitSite:
    """Detections of one place in the image: the best box ([x1, y1, x2, y2], image pixels), each
    digit's best score there (10 floats) and the presence (their sum, at most 1). `top` is the index
    of the detection whose box it is, in the sequence the site was grouped from (-1: unknown)."""

    box_xyxy: BoxXYXY
    class_scores: tuple[float, ...]
    presence: float
    top: int = -1


@dataclass(frozen=True)
class Findings:
    """What was found in one image: the detector's `detections` (every box with its class score,
    xyxy in the image's pixels: COCO output, Task 1) and the digit `sites` the number is read from
    (one per place after the reader's second opinion; the detections themselves without a reader)."""

    detections: list[Detection]
    sites: list[Detection]

    def scaled(self, sx: float, sy: float) -> Findings:
        """The same findings with every box's x multiplied by `sx` and y by `sy` (`scale_xyxy`)."""
        if (sx, sy) == (1.0, 1.0):
            return self
        return Findings(
            [replace(d, box_xyxy=scale_xyxy(d.box_xyxy, sx, sy)) for d in self.detections],
            [replace(d, box_xyxy=scale_xyxy(d.box_xyxy, sx, sy)) for d in self.sites],
        )


def crop_window(
    box: BoxXYXY, context: float, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
) -> BoxXYXY:
    """The square [x1, y1, x2, y2] (pixels, may reach outside the image) cut around `box` ([x1, y1, x2,
    y2] pixels): side `context * scale * max(w, h)`, centre moved by `shift` x side."""
    x1, y1, x2, y2 = box
    side = context * scale * max(x2 - x1, y2 - y1, 1.0)
    cx = (x1 + x2) / 2 + shift[0] * side
    cy = (y1 + y2) / 2 + shift[1] * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def pixel_window(window: BoxXYXY) -> tuple[int, int, int]:
    """(left, top, side): the whole pixels that `crop_square` cuts for the square `window` (xyxy)."""
    return round(window[0]), round(window[1]), max(round(window[2] - window[0]), 1)


def crop_square(image: torch.Tensor, window: BoxXYXY, size: int) -> torch.Tensor:
    """`image` (FloatTensor[3, H, W]) cut to the square `window` (xyxy pixels; outside the image is
    zero) and resized to FloatTensor[3, size, size]."""
    left, top, side = pixel_window(window)
    return F.resized_crop(image, top, left, side, side, [size, size], antialias=True)


def crop_digits(image: torch.Tensor, boxes: Sequence[BoxXYXY], spec: CropSpec) -> torch.Tensor:
    """The reader's input for each of `boxes` (xyxy pixels of `image`, FloatTensor[3, H, W] RGB in
    [0, 1]): FloatTensor[N, 3, spec.size, spec.size]."""
    if not boxes:
        return image.new_zeros((0, 3, spec.size, spec.size))
    return torch.stack([crop_square(image, crop_window(b, spec.context), spec.size) for b in boxes])


def group_sites(detections: Sequence[Detection], site_iou: float) -> list[DigitSite]:
    """Greedy grouping, best score first: a site takes every remaining detection whose box overlaps
    its best box by IoU >= `site_iou`. Returns the sites in order of their best score."""
    left = sorted(range(len(detections)), key=lambda i: detections[i].score, reverse=True)
    sites: list[DigitSite] = []
    while left:
        top = detections[left[0]]
        members = [i for i in left if box_iou(detections[i].box_xyxy, top.box_xyxy) >= site_iou]
        scores = [0.0] * NUM_DIGITS
        for d in (detections[i] for i in members):
            scores[d.digit] = max(scores[d.digit], d.score)
        sites.append(DigitSite(top.box_xyxy, tuple(scores), min(1.0, sum(scores)), left[0]))
        left = [i for i in left if i not in members]
    return sites


def mix_opinions(
    site_scores: torch.Tensor, reader_probs: torch.Tensor, detector_weight: float
) -> torch.Tensor:
    """Per-site digit probabilities (FloatTensor[N, 10], rows sum to 1) from the detector's class
    scores (FloatTensor[N, 10], >= 0, rows not all zero) and the reader's softmax (FloatTensor[N, 10]):
    a weighted geometric mean, renormalised."""
    detector = site_scores / site_scores.sum(dim=1, keepdim=True)
    floor = 1e-4  # a class one opinion rules out entirely can still win on the other's strength
    mixed = detector.clamp_min(floor) ** detector_weight * reader_probs.clamp_min(floor) ** (
        1 - detector_weight
    )
    return mixed / mixed.sum(dim=1, keepdim=True)


def reread_sites(
    sites: Sequence[DigitSite], reader_probs: torch.Tensor, params: RereadParams
) -> list[Detection]:
    """One detection per site: its best box, the digit the mixed opinion prefers and the site's score
    (its presence, or with a "no digit" output the mix of both judgements, see `RereadParams`).
    `reader_probs` (FloatTensor[N, 10], or FloatTensor[N, 11] whose column 10 is "no digit") holds the
    reader's softmax for the sites with presence >= `params.min_presence`, in order; the others keep
    the detector's best digit and their presence."""
    shown = [s for s in sites if s.presence >= params.min_presence]
    if len(shown) != len(reader_probs):
        raise ValueError(f"{len(reader_probs)} reader outputs for {len(shown)} sites")
    judged = []
    if shown:
        digit_probs = reader_probs[:, :NUM_DIGITS]
        digit_probs = digit_probs / digit_probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
        site_scores = torch.tensor([s.class_scores for s in shown])
        mixed = mix_opinions(site_scores, digit_probs, params.detector_weight)
        scores = [s.presence for s in shown]
        if reader_probs.shape[1] > NUM_DIGITS:
            is_digit = (1 - reader_probs[:, NUM_DIGITS]).clamp(0.0, 1.0).tolist()
            p = params.presence_weight
            scores = [s**p * d ** (1 - p) for s, d in zip(scores, is_digit, strict=True)]
        judged = [(int(m.argmax()), score) for m, score in zip(mixed, scores, strict=True)]
    rows = iter(judged)
    out = []
    for site in sites:
        if site.presence >= params.min_presence:
            digit, score = next(rows)
        else:
            digit, score = max(range(NUM_DIGITS), key=site.class_scores.__getitem__), site.presence
        out.append(Detection(site.box_xyxy, digit, score))
    return out


@torch.inference_mode()
def read_boxes(
    reader: nn.Module, images: Sequence[torch.Tensor], boxes: Sequence[Sequence[BoxXYXY]], spec: CropSpec
) -> list[torch.Tensor]:
    """The reader's softmax for each of every image's `boxes` (xyxy pixels of that image,
    FloatTensor[3, H, W] RGB in [0, 1]): one reader call over all the crops; per image
    FloatTensor[n, C] on the CPU (C = 10, or 11 with "no digit"). `reader` is as in `reread_images`."""
    crops = [crop_digits(image, list(b), spec) for image, b in zip(images, boxes, strict=True)]
    batch = torch.cat(crops) if crops else torch.zeros((0, 3, spec.size, spec.size))
    probs = reader(batch).softmax(dim=1).float().cpu() if len(batch) else torch.zeros((0, NUM_DIGITS))
    return list(probs.split([len(c) for c in crops]))


@torch.inference_mode()
def reread_images(
    reader: nn.Module,
    images: Sequence[torch.Tensor],
    detections: Sequence[Sequence[Detection]],
    params: RereadParams,
    spec: CropSpec,
) -> list[list[Detection]]:
    """The digit sites of each image (FloatTensor[3, H, W] RGB in [0, 1]), re-read: one reader call
    over the crops of every image's sites. `detections` are the detector's, xyxy in that image's
    pixels. `reader` maps FloatTensor[N, 3, S, S] crops to logits FloatTensor[N, 10] or [N, 11] (a
    `models.reader.DigitReader` in eval mode on the images' device; column 10 is "no digit")."""
    sites = [group_sites(dets, params.site_iou) for dets in detections]
    shown = [[s.box_xyxy for s in image_sites if s.presence >= params.min_presence] for image_sites in sites]
    probs = read_boxes(reader, images, shown, spec)
    return [reread_sites(image_sites, part, params) for image_sites, part in zip(sites, probs, strict=True)]


def reread_detections(
    detections: Sequence[Sequence[Detection]], detection_probs: Sequence[torch.Tensor], params: RereadParams
) -> list[list[Detection]]:
    """What `reread_images` gives, from readings already made of every detection's box (per image
    FloatTensor[n, C], `read_boxes` with the same crop settings): a site's reading is that of its best
    box, the very crop `reread_images` would cut. No reader call."""
    out = []
    for dets, probs in zip(detections, detection_probs, strict=True):
        if len(probs) != len(dets):
            raise ValueError(f"{len(probs)} reader rows for {len(dets)} detections")
        sites = group_sites(dets, params.site_iou)
        rows = [s.top for s in sites if s.presence >= params.min_presence]
        out.append(reread_sites(sites, probs[rows], params))
    return out
