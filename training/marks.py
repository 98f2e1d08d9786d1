"""Letters and marks beside a number: negatives for the detector ("12A", "28 BIS", "N°53", "#7").

House numbers carry letters and signs that are not digits, and the shipped detector reads some of
them as digits (the validation photos of "2A" read 21, "N°53" read 453; `benchmarks/bench_marks.py`
counts how often). `MarkBeside` pastes one such
mark beside a training number, in the colour and at the height of its digits, with no box and no
label, so that it is learnt as background. `paste_mark` is the pure part (every choice given);
`MarkBeside` draws the choices with torch's global generator, as the other training transforms do.

Images are FloatTensor[3, H, W] RGB in [0, 1]; boxes FloatTensor[N, 4] XYXY in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2 import functional as F

from training.synth import SYMBOL_FONTS

SUFFIXES = ("A", "B", "C", "D", "E", "F", "G", "H", "a", "b", "c", "d", "e", "f", "BIS", "TER")
PREFIXES = ("N°", "No", "#")
GLYPH_PX = 64  # marks are drawn at this size, then scaled to the digits' height
# The ranges a mark is drawn from, shared by training (`MarkBeside`) and benchmarks/bench_marks.py:
SUFFIX_SHARE = 0.75  # after the number this often, else before it
HEIGHT = (0.55, 0.45)  # ink height as a share of the digits' median height: lowest, then the range's width
GAP = (0.1, 0.5)  # gap to the number as a share of the next digit's width: lowest, width
BLUR_MAX = 0.1  # Gaussian sigma as a share of the digits' height, drawn from [0, BLUR_MAX]


def mark_fonts(family: str = "DejaVu") -> tuple[str, ...]:
    """The TrueType fonts shipped with matplotlib (the same on every machine) whose file name starts
    with `family` and that draw every mark (`SUFFIXES`, `PREFIXES`): not the symbol fonts, nor the
    display fonts that hold only large operators. Raises ValueError when there is none."""
    import matplotlib

    folder = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    fonts = tuple(
        str(p)
        for p in sorted(folder.glob(f"{family}*.ttf"))
        if not any(s in p.name.lower() for s in SYMBOL_FONTS)
        and all(glyph_mask(text, str(p)).numel() for text in (*SUFFIXES, *PREFIXES))
    )
    if not fonts:
        raise ValueError(f"no matplotlib font named {family}* in {folder} draws the marks")
    return fonts


@cache
def glyph_mask(text: str, font_path: str) -> torch.Tensor:
    """`text` drawn in the font at `GLYPH_PX`, cropped to its ink: FloatTensor[h, w] in [0, 1]
    (an empty [0, 0] tensor when the font draws nothing for it)."""
    font = ImageFont.truetype(font_path, GLYPH_PX)
    canvas = Image.new("L", (GLYPH_PX * (len(text) + 2), GLYPH_PX * 2))
    ImageDraw.Draw(canvas).text((GLYPH_PX // 2, GLYPH_PX // 4), text, font=font, fill=255)
    box = canvas.getbbox()
    if box is None:
        return torch.zeros(0, 0)
    return F.pil_to_tensor(canvas.crop(box))[0].float() / 255


def plate_and_ink(image: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The colours of a digit's plate (the median of the box's left and right columns) and of its
    strokes (the mean of the 15 % of the box's pixels farthest from the plate). `image`
    FloatTensor[3, H, W], `box` FloatTensor[4] XYXY. Returns two FloatTensor[3]."""
    height, width = image.shape[-2:]
    x1, y1 = int(box[0].clamp(0, width - 1)), int(box[1].clamp(0, height - 1))
    x2, y2 = max(x1 + 1, int(box[2].ceil().clamp(1, width))), max(y1 + 1, int(box[3].ceil().clamp(1, height)))
    crop = image[:, y1:y2, x1:x2].reshape(3, -1)
    sides = torch.cat([image[:, y1:y2, x1], image[:, y1:y2, x2 - 1]], dim=1)
    plate = sides.median(dim=1).values
    distance = (crop - plate[:, None]).norm(dim=0)
    far = distance >= distance.quantile(0.85)
    return plate, crop[:, far].mean(dim=1)


def digit_ink(image: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """The colour of a digit's strokes (`plate_and_ink`). `image` FloatTensor[3, H, W], `box`
    FloatTensor[4] XYXY. Returns FloatTensor[3]."""
    return plate_and_ink(image, box)[1]


@dataclass(frozen=True)
class MarkChoice:
    """Every random choice of one mark: its text and font, whether it follows the number (else it
    precedes it), its ink height as a share of the digits' median height, the gap to the number as a
    share of the next digit's width, and the blur (Gaussian sigma as a share of the digits' height)."""

    text: str
    font_path: str
    suffix: bool
    height: float
    gap: float
    blur: float


def paste_mark(image: torch.Tensor, boxes: torch.Tensor, choice: MarkChoice) -> torch.Tensor | None:
    """`image` with the mark beside its number: after the rightmost digit (`choice.suffix`) or before
    the leftmost, on their bottom line, in their ink colour; beyond every box, so it covers no labelled
    digit. Returns a new FloatTensor[3, H, W], or None when there is no digit or the mark does not fit
    in the image; the boxes stay as they are (the mark is background)."""
    if len(boxes) == 0:
        return None
    glyph = glyph_mask(choice.text, choice.font_path)
    if glyph.numel() == 0:
        return None
    digit_height = float((boxes[:, 3] - boxes[:, 1]).median())
    ref = boxes[int(boxes[:, 2].argmax())] if choice.suffix else boxes[int(boxes[:, 0].argmin())]
    mark_h = max(3, round(digit_height * choice.height))
    mark_w = max(1, round(glyph.shape[1] * mark_h / glyph.shape[0]))
    gap = choice.gap * float(ref[2] - ref[0])
    left = round(float(ref[2]) + gap) if choice.suffix else round(float(ref[0]) - gap) - mark_w
    top = round(float(ref[3])) - mark_h
    right, bottom = left + mark_w, top + mark_h
    if left < 0 or top < 0 or right > image.shape[-1] or bottom > image.shape[-2]:
        return None
    alpha = F.resize(glyph[None], [mark_h, mark_w], antialias=True).clamp(0, 1)
    sigma = choice.blur * digit_height
    if sigma >= 0.3:
        kernel = 2 * round(2 * sigma) + 1
        alpha = F.gaussian_blur(alpha[None], [kernel, kernel], [sigma, sigma])[0]
    ink = digit_ink(image, ref)
    out = image.clone()
    region = out[:, top:bottom, left:right]
    out[:, top:bottom, left:right] = region * (1 - alpha) + ink[:, None, None] * alpha
    return out


class MarkBeside:
    """With probability `p`, a letter or mark (`SUFFIXES` after the number three times in four, else
    `PREFIXES` before it) in one of `fonts`, 0.55-1.0 of the digits' height, 0.1-0.6 of a digit's
    width away, blurred by up to a tenth of the digits' height (`SUFFIX_SHARE`, `HEIGHT`, `GAP`,
    `BLUR_MAX`). Leaves the image as it is where the
    mark does not fit (`paste_mark`). Draws nothing when `p` is 0."""

    def __init__(self, p: float, fonts: tuple[str, ...]) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the mark probability must lie in [0, 1], got {p}")
        if p > 0 and not fonts:
            raise ValueError("marks need at least one font")
        self.p, self.fonts = p, fonts

    def draw(self) -> MarkChoice:
        """One mark's choices, from torch's global generator."""
        u = torch.rand(6).tolist()
        suffix = u[0] < SUFFIX_SHARE
        texts = SUFFIXES if suffix else PREFIXES
        return MarkChoice(
            text=texts[min(int(u[1] * len(texts)), len(texts) - 1)],
            font_path=self.fonts[min(int(u[2] * len(self.fonts)), len(self.fonts) - 1)],
            suffix=suffix,
            height=HEIGHT[0] + HEIGHT[1] * u[3],
            gap=GAP[0] + GAP[1] * u[4],
            blur=BLUR_MAX * u[5],
        )

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or float(torch.rand(())) >= self.p:
            return image
        marked = paste_mark(image, boxes, self.draw())
        return image if marked is None else marked
