"""Pure box-format helpers. `xyxy` is [x1, y1, x2, y2]; `xywh` is COCO's [x, y, width, height];
both in pixels of the frame they were measured in."""

from __future__ import annotations

from collections.abc import Sequence

BoxXYXY = tuple[float, float, float, float]
BoxXYWH = tuple[float, float, float, float]


def xywh_to_xyxy(box: Sequence[float]) -> BoxXYXY:
    """COCO [x, y, w, h] -> [x1, y1, x2, y2]."""
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def xyxy_to_xywh(box: Sequence[float]) -> BoxXYWH:
    """[x1, y1, x2, y2] -> COCO [x, y, w, h]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1, y1, x2 - x1, y2 - y1)


def clamp_xyxy(box: Sequence[float], width: float, height: float) -> BoxXYXY:
    """Clamp an xyxy box to the image [0, width] x [0, height]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )


def scale_xyxy(box: Sequence[float], sx: float, sy: float) -> BoxXYXY:
    """An xyxy box with x multiplied by `sx` and y by `sy`: from the pixels of an image resized by 1 /
    (sx, sy) to the original's."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box; 0 for degenerate boxes."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes; 0 when either is degenerate."""
    inter = box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def box_height(box: Sequence[float]) -> float:
    """Height y2 - y1 of an xyxy box."""
    return box[3] - box[1]


def span_overlap(a: Sequence[float], b: Sequence[float], axis: int) -> float:
    """How far two xyxy boxes' spans along `axis` (0: x, 1: y) overlap; negative: the gap between them."""
    return min(a[axis + 2], b[axis + 2]) - max(a[axis], b[axis])


def box_center(box: Sequence[float]) -> tuple[float, float]:
    """Centre (cx, cy) of an xyxy box."""
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
