"""The box refiner: a small network that looks again at each detected box in the original pixels and
moves its edges towards where the digit's labelled box would be, and its storage.

Why: most of the mAP the detector loses is localisation, not recall (on the validation split mAP50
0.908 but mAP75 0.375); moving every box a quarter of the way towards its labelled box would lift
mAP@[.5:.95] from 0.446 to 0.560 (issue #4, experiment 17 in the model card). The refiner is a
second, box-only stage on a crop around each box, the way iterative box regression and Cascade R-CNN
refine boxes, but on the image's own pixels rather than the detector's 96 px features.

A refiner lives in a checkpoint folder as `refiner.safetensors` plus `refiner.json` (width, crop and
step settings, sha256 of the weights, metrics). Everything that loads the checkpoint then uses it,
before the reader (`models.reread`): the refined boxes are the COCO output (Task 1) and the boxes the
digit sites are read from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.assembly import Detection
from models.boxes import BoxXYXY, clamp_xyxy
from models.checkpoint import load_part, save_part
from models.reader import CropNet
from models.reread import CropSpec, crop_digits, crop_window, pixel_window

log = logging.getLogger(__name__)
REFINER = "refiner"  # the part's name in a checkpoint folder
REFINER_WEIGHTS = f"{REFINER}.safetensors"
REFINER_META = f"{REFINER}.json"
DELTA_SCALE = 5.0  # the network's raw outputs are DELTA_SCALE x the deltas (unit variance in training)


class RefinerError(RuntimeError):
    """A refiner folder is incomplete, malformed, or does not match its recorded hash."""


@dataclass(frozen=True)
class RefineParams:
    """A box is cut out as a square of `context` x its longer side around its centre, resized to
    `size` x `size` px; its edges then move by `step` x the predicted correction (1 = all the way).
    Boxes scoring under `min_score` keep the detector's box: they weigh little in mAP, and the refiner
    costs ~1 ms per box on 2 CPU cores (the shipped model refines every box, model card experiment 17).
    With `box_channel` the crop has a 4th channel, the box's own rectangle (`box_masks`): a square crop
    shows the box's longer side only, so without it the refiner cannot see where a tall box's left and
    right edges are (model card experiment 18). Refiners saved before it existed have none."""

    size: int = 48
    context: float = 1.6
    step: float = 0.5
    min_score: float = 0.0
    box_channel: bool = True

    def __post_init__(self) -> None:
        if (
            self.size < 8
            or self.context < 1.0
            or not 0.0 <= self.step <= 2.0
            or not 0.0 <= self.min_score <= 1.0
        ):
            raise ValueError(f"bad refiner settings: {self}")


class BoxRefiner(CropNet):
    """`CropNet` with a linear layer to 4 outputs (~0.33 M parameters at `width` 24), 5 with `fit_head`.

    Input FloatTensor[N, 4, S, S] (RGB in [0, 1], then the box's rectangle in [0, 1]; FloatTensor[N,
    3, S, S] without `box_channel`), crops cut by `crop_boxes`; output FloatTensor[N, 4]: the
    corrections (dx1, dy1, dx2, dy2) of each crop's box, as fractions of its width (x) and height (y),
    see `box_deltas`. With `fit_head`, FloatTensor[N, 5]: column 4 is the logit of the box's IoU with
    the digit's true box once moved by the served step (model card experiment 19)."""

    def __init__(self, width: int = 24, box_channel: bool = True, fit_head: bool = False) -> None:
        super().__init__(width, extra_channels=int(box_channel))
        self.box_channel, self.fit_head = box_channel, fit_head
        self.head = nn.Linear(8 * width, 5 if fit_head else 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.cat([out[:, :4] / DELTA_SCALE, out[:, 4:]], dim=1)  # the fit logit, if any, as is


def box_deltas(box: BoxXYXY, target: BoxXYXY) -> tuple[float, float, float, float]:
    """How far each edge of `box` must move to reach `target` (both [x1, y1, x2, y2] pixels), as
    fractions of `box`'s width (x1, x2) and height (y1, y2)."""
    w, h = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
    return (
        (target[0] - box[0]) / w,
        (target[1] - box[1]) / h,
        (target[2] - box[2]) / w,
        (target[3] - box[3]) / h,
    )


def shift_box(box: BoxXYXY, deltas: Sequence[float], step: float = 1.0) -> BoxXYXY:
    """`box` ([x1, y1, x2, y2] pixels) with its edges moved by `step` x `deltas` (`box_deltas`'s
    units). An edge never crosses the opposite one: the box keeps at least a tenth of its size."""
    w, h = box[2] - box[0], box[3] - box[1]
    x1, y1 = box[0] + step * deltas[0] * w, box[1] + step * deltas[1] * h
    x2, y2 = box[2] + step * deltas[2] * w, box[3] + step * deltas[3] * h
    if x2 - x1 < 0.1 * w:
        x1 = x2 = (x1 + x2) / 2
        x1, x2 = x1 - 0.05 * w, x2 + 0.05 * w
    if y2 - y1 < 0.1 * h:
        y1 = y2 = (y1 + y2) / 2
        y1, y2 = y1 - 0.05 * h, y2 + 0.05 * h
    return (x1, y1, x2, y2)


def box_masks(boxes: Sequence[BoxXYXY], params: RefineParams) -> torch.Tensor:
    """FloatTensor[N, 1, S, S] (S = `params.size`): for each of `boxes` (xyxy pixels), the share of
    every pixel of its crop (the window `crop_boxes` cuts, whole pixels as `crop_square` takes them)
    that the box covers: 1 inside, 0 outside, fractions along its edges."""
    size = params.size
    edges = []  # per box: its x1, x2, y1, y2 in crop pixels
    for box in boxes:
        left, top, side = pixel_window(crop_window(box, params.context))
        scale = size / side
        edges.append(
            [(box[0] - left) * scale, (box[2] - left) * scale, (box[1] - top) * scale, (box[3] - top) * scale]
        )
    if not edges:
        return torch.zeros((0, 1, size, size))
    start, end = torch.tensor(edges, dtype=torch.float32).view(-1, 2, 2).unbind(dim=2)  # [N, 2]: x, y
    first = torch.arange(size, dtype=torch.float32)  # crop pixel j spans [j, j + 1)
    cover = torch.minimum(first + 1, end[..., None]) - torch.maximum(first, start[..., None])
    cover = cover.clamp(0.0, 1.0)  # [N, 2, S]: each pixel column's, then row's, share inside the box
    return (cover[:, 1, :, None] * cover[:, 0, None, :]).unsqueeze(1)


def crop_boxes(image: torch.Tensor, boxes: Sequence[BoxXYXY], params: RefineParams) -> torch.Tensor:
    """The refiner's input for each of `boxes` (xyxy pixels of `image`, FloatTensor[3, H, W] RGB in
    [0, 1]): FloatTensor[N, 4, params.size, params.size], the crop cut as the reader's are
    (`models.reread.crop_digits`) and then the box's rectangle (`box_masks`); FloatTensor[N, 3, ...]
    without `params.box_channel`."""
    crops = crop_digits(image, boxes, CropSpec(size=params.size, context=params.context))
    if not params.box_channel:
        return crops
    return torch.cat([crops, box_masks(boxes, params).to(crops)], dim=1)


@torch.inference_mode()
def refine_images(
    refiner: nn.Module,
    images: Sequence[torch.Tensor],
    detections: Sequence[Sequence[Detection]],
    params: RefineParams,
) -> list[list[Detection]]:
    """Every detection of each image (FloatTensor[3, H, W] RGB in [0, 1]; boxes xyxy in its pixels),
    in order, digit and score unchanged, the box refined when the score is >= `params.min_score` (a
    box under it gets no fit either): one refiner call over the crops of the whole batch. `refiner`
    maps the crops (`crop_boxes`, FloatTensor[N, 4, S, S], or [N, 3, S, S] without the box channel) to deltas
    FloatTensor[N, 4] (a `BoxRefiner` in eval mode on the images' device), or FloatTensor[N, 5] with
    a fit logit, which sets each refined detection's `fit`. A refined box is clamped to its image: a
    box on a digit at the border can be moved past it."""
    crops = [
        crop_boxes(img, [d.box_xyxy for d in dets if d.score >= params.min_score], params)
        for img, dets in zip(images, detections, strict=True)
    ]
    if not any(len(c) for c in crops):
        return [list(dets) for dets in detections]
    out = refiner(torch.cat(crops)).float().cpu()
    fits = out[:, 4].sigmoid().tolist() if out.shape[1] > 4 else [None] * len(out)
    rows = iter(zip(out[:, :4].tolist(), fits, strict=True))

    def refined(d: Detection, width: int, height: int) -> Detection:
        deltas, fit = next(rows)
        box = clamp_xyxy(shift_box(d.box_xyxy, deltas, params.step), width, height)
        return replace(d, box_xyxy=box, fit=fit)

    return [
        [refined(d, img.shape[-1], img.shape[-2]) if d.score >= params.min_score else d for d in dets]
        for img, dets in zip(images, detections, strict=True)
    ]


@dataclass(frozen=True)
class RefinerMeta:
    """What `refiner.json` says."""

    width: int
    params: RefineParams
    sha256: str
    dtype: str = "float32"
    metrics: dict[str, Any] = field(default_factory=dict)
    fit_head: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RefinerMeta:
        return cls(
            width=int(doc["width"]),
            params=RefineParams(**{"box_channel": False, **doc["params"]}),  # older: no box channel
            sha256=str(doc["sha256"]),
            dtype=str(doc.get("dtype", "float32")),
            metrics=dict(doc.get("metrics") or {}),
            fit_head=bool(doc.get("fit_head", False)),
        )


def save_refiner(
    directory: str | Path,
    refiner: BoxRefiner,
    params: RefineParams,
    *,
    metrics: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> RefinerMeta:
    """Write `refiner`'s weights (as `dtype`) and `refiner.json` into `directory` (created if needed).
    Raises ValueError when `params` and `refiner` disagree on the box channel."""
    if params.box_channel != refiner.box_channel:
        raise ValueError(
            f"refiner box_channel={refiner.box_channel} but params box_channel={params.box_channel}"
        )

    def meta(sha256: str) -> RefinerMeta:
        return RefinerMeta(refiner.width, params, sha256, dtype, metrics or {}, refiner.fit_head)

    return save_part(directory, REFINER, refiner, dtype, meta)


def has_refiner(directory: str | Path) -> bool:
    """True when `directory` holds a refiner (its `refiner.json`)."""
    return (Path(directory) / REFINER_META).is_file()


def load_refiner(directory: str | Path, device: str | torch.device = "cpu") -> tuple[BoxRefiner, RefinerMeta]:
    """Verify and load the refiner in `directory`: float32, eval mode, on `device`. Raises RefinerError."""
    refiner, meta = load_part(
        directory,
        REFINER,
        RefinerMeta.from_dict,
        lambda m: BoxRefiner(m.width, m.params.box_channel, m.fit_head),
        RefinerError,
    )
    return refiner.to(device), meta


def copy_refiner(
    source: str | Path, directory: str | Path, dtype: str = "float32", step: float | None = None
) -> RefinerMeta:
    """Verify the refiner in `source` and write it into `directory` (a checkpoint folder, say) as
    `dtype`, with its settings (the step replaced by `step` when given) and metrics."""
    refiner, meta = load_refiner(source)
    params = meta.params if step is None else replace(meta.params, step=step)
    if meta.fit_head and params.step != meta.params.step:
        log.warning(
            "the refiner's fit was learnt for step %s, not %s: its estimates will be off",
            meta.params.step,
            step,
        )
    return save_refiner(directory, refiner, params, metrics=meta.metrics, dtype=dtype)
