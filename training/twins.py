"""A digit of the number pasted again beside it: more numbers with two like digits side by side.

Where two 1s stand side by side the shipped detector scores one of them far under the threshold
(validation 11997: 117 read 17; 13105: 1103 read 103; model card, "Known failure modes"), and no
setting after the detector brings it back. `DigitBeside` copies one of the number's own digits (its
end digit, so that the pair is alike, or any of its digits) beside the number, after the last digit
or before the first, at the number's own spacing, and adds its box and label: the detector sees more
pairs of like digits, with their real strokes, plate and blur.

Only the strokes travel: each pixel of the copied box is blended over the destination by how far it
lies from the source plate's colour towards its ink's (`stroke_alpha`), so the plate beside the
number stays the plate. `paste_digit` is the pure part (every choice given); `DigitBeside` draws the
choices with torch's global generator, as the other training transforms do.

Experiment 145 (models/EXPERIMENTS.md) trained with it: 16 fewer validation numbers than its control,
more of them read with an extra digit, no like pair more; it is off in every shipped recipe.

Images are FloatTensor[3, H, W] RGB in [0, 1]; boxes FloatTensor[N, 4] XYXY in pixels; labels
Int64Tensor[N] (the digit + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.marks import plate_and_ink

SUFFIX_SHARE = 0.5  # after the number this often, else before it
SAME_SHARE = 0.5  # the end digit copied this often (a like pair), else one of the number's digits
GAP_JITTER = (0.5, 1.0)  # the number's own gap times a factor drawn from [lowest, lowest + width]
LONE_GAP = 0.15  # the gap, as a share of the digit's width, for a number of one digit


@dataclass(frozen=True)
class DigitChoice:
    """Every random choice of one copy: whether it follows the number (else it precedes it), which of
    the number's digits is copied (its index among them left to right; None: the end digit beside
    which it stands), and the gap as a multiple of the number's own gap."""

    suffix: bool
    source: int | None
    gap: float


def number_gap(boxes: torch.Tensor) -> float:
    """The number's own spacing: the (lower) median gap between neighbouring digits, left to right (0 where
    they touch or overlap), or `LONE_GAP` x the digit's width for one digit. `boxes` [N, 4] XYXY, N >= 1."""
    ordered = boxes[boxes[:, 0].argsort()]
    if len(ordered) == 1:
        return LONE_GAP * float(ordered[0, 2] - ordered[0, 0])
    gaps = (ordered[1:, 0] - ordered[:-1, 2]).clamp(min=0)
    return float(gaps.median())


def stroke_alpha(crop: torch.Tensor) -> torch.Tensor:
    """How much of each pixel of a digit's box is stroke: its distance from the plate's colour towards
    the ink's (`training.marks.plate_and_ink` on the whole crop), projected and clamped to [0, 1].
    `crop` FloatTensor[3, h, w]. Returns FloatTensor[h, w]; zeros where ink and plate are alike
    (nothing to copy)."""
    _, height, width = crop.shape
    plate, ink = plate_and_ink(crop, torch.tensor([0.0, 0.0, float(width), float(height)]))
    axis = ink - plate
    norm = float(axis.dot(axis))
    if norm < 1e-4:
        return torch.zeros(height, width)
    return ((crop - plate[:, None, None]) * axis[:, None, None]).sum(0).div(norm).clamp(0, 1)


def paste_digit(
    image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, choice: DigitChoice
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """`image` with one of its number's digits copied beside the number: after the rightmost digit
    (`choice.suffix`) or before the leftmost, `choice.gap` x the number's gap (`number_gap`) away, its
    bottom on the end digit's bottom, only its strokes blended in (`stroke_alpha`). Returns the new
    FloatTensor[3, H, W], the boxes with the copy's box appended ([N + 1, 4]) and the labels with its
    label ([N + 1]), or None when there is no digit, the source box has no whole pixel, or the copy
    does not fit in the image. The copy lies beyond every box, so it covers no labelled digit."""
    if len(boxes) == 0:
        return None
    height, width = image.shape[-2:]
    order = boxes[:, 0].argsort()
    end = int(boxes[:, 2].argmax()) if choice.suffix else int(boxes[:, 0].argmin())
    source = end if choice.source is None else int(order[min(choice.source, len(order) - 1)])
    sx1, sy1 = max(0, round(float(boxes[source, 0]))), max(0, round(float(boxes[source, 1])))
    sx2, sy2 = min(width, round(float(boxes[source, 2]))), min(height, round(float(boxes[source, 3])))
    if sx2 - sx1 < 2 or sy2 - sy1 < 2:
        return None
    copy_w, copy_h = sx2 - sx1, sy2 - sy1
    gap = round(choice.gap * number_gap(boxes))
    ref = boxes[end]
    left = round(float(ref[2])) + gap if choice.suffix else round(float(ref[0])) - gap - copy_w
    bottom = round(float(ref[3]))
    top, right = bottom - copy_h, left + copy_w
    if left < 0 or top < 0 or right > width or bottom > height:
        return None
    crop = image[:, sy1:sy2, sx1:sx2]
    alpha = stroke_alpha(crop)
    out = image.clone()
    region = out[:, top:bottom, left:right]
    out[:, top:bottom, left:right] = region * (1 - alpha) + crop * alpha
    box = torch.tensor([[left, top, right, bottom]], dtype=boxes.dtype)
    return out, torch.cat([boxes, box]), torch.cat([labels, labels[source : source + 1]])


class DigitBeside:
    """With probability `p`, one of the number's digits copied beside it (`paste_digit`): after it
    `SUFFIX_SHARE` of the time, else before it; the end digit `SAME_SHARE` of the time, else any of
    its digits; `GAP_JITTER` x the number's gap away. Leaves the sample as it is where the copy does
    not fit. Draws nothing when `p` is 0."""

    def __init__(self, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the copy probability must lie in [0, 1], got {p}")
        self.p = p

    def draw(self, digits: int) -> DigitChoice:
        """One copy's choices for a number of `digits` digits, from torch's global generator."""
        u = torch.rand(4).tolist()
        source = None if u[1] < SAME_SHARE else min(int(u[2] * digits), digits - 1)
        return DigitChoice(
            suffix=u[0] < SUFFIX_SHARE, source=source, gap=GAP_JITTER[0] + GAP_JITTER[1] * u[3]
        )

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.p == 0.0 or float(torch.rand(())) >= self.p or len(boxes) == 0:
            return image, boxes, labels
        pasted = paste_digit(image, boxes, labels, self.draw(len(boxes)))
        return (image, boxes, labels) if pasted is None else pasted
