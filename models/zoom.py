"""A second look at small numbers: when the digits of the first pass are small at the model's input
scale, crop around them and run the detector again on the crop.

The detector sees every image resized so that its shorter side is `min_size` px (96 for the shipped
model). A number that fills little of its photo then has digits of 20-40 px at that scale, which the
shipped model reads right 0-60 % of the time, against 86 % for digits of 60-100 px (validation
split). Cropping to the number brings its digits to the size the model was trained on. Only the
images that need it pay for the second forward pass (a quarter of the validation split at the shipped
settings).

A photo can hold its number so small that the first pass locates nothing at all: a house front of
which the number fills a sixth of the height has digits of ~10 px at the model's input scale. Where
the photo has the pixels for it, a search pass then looks over overlapping tiles of it, each at a
larger scale than the whole (`ZoomParams.search_tiles`), and the second look starts from what the
tiles locate. It costs nothing on photos where the first pass locates a digit, and
`search_tiles`^2 forward passes where it does not; with `ZoomParams.search_located` (on in the
shipped checkpoint) it also runs where the first pass locates something, because in a large photo
the first pass often locates clutter or part of the number, and costs those passes there too. With
`ZoomParams.search_below_p` < 1 it runs there only when the photo read without it is doubtful
(`search_again`: the number verifier's p_correct below that; models/verifier.py), which the pipeline
that owns the verifier decides (service.predictor, training.evaluate), reading the photo twice. With
`ZoomParams.search_near` > 0 it looks there only at the tiles near what the first pass marks
(`near_tiles`), fewer passes for as many numbers read.

A long, narrow photo (a crop of a panorama, a strip of a wall) holds its number small too, in
another way: the detector sees no side of an image longer than its `max_size` (384 px), so a photo
more than `max_size` / `min_size` (4) times as wide as high reaches it shrunk below `min_size` on its
shorter side, a 16:1 strip to a quarter of the scale the number alone is seen at. The search then
also cuts the photo along its length (`search_tiles` with the model's `max_size`, `strip_count`),
into tiles within that ratio, each seen at the scale `min_size` gives it (experiment 153).

A photo can also frame its number tightly, a digit close to its left or right side. The SVHN photos
the model learned from are crops with room around the number, whose labels mostly leave out a digit
the photo's side cuts, and the model learned to leave out digits at the sides: on synthetic numbers
framed tightly, it drops the first or last digit (2301 read as 230). Where the located number reaches
near a side (`ZoomParams.side_look`), a side look runs the same passes over the photo widened by half
its height on both sides (its mean colour) and takes that reading when it reads more of the number;
without any digit the photo's side cuts (one within `SIDE_CUT` digit heights of the photo's own side).

Where both passes find a digit, each has measured its box, at two scales: the box the second look
keeps can be the average of the two (`ZoomParams.fuse_first`, `fuse_passes`), which fits the labelled
boxes more closely than either alone (model card, experiment 55).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torchvision.models.detection import FasterRCNN
from torchvision.ops import batched_nms

from models.assembly import COLUMN_OVERLAP_X, Detection, is_column
from models.boxes import BoxXYXY, box_center, box_height, box_iou, span_overlap
from models.inference import outputs_to_detections

CropXYXY = tuple[int, int, int, int]  # [x1, y1, x2, y2) in whole pixels of the original image
SIDE_PAD = 0.5  # the side look widens the photo by this many photo heights on each side
SIDE_CUT = 0.05  # ... and drops digits within this many digit heights of the photo's own sides
FUSE_IOU = 0.5  # a first-pass box this close to a second-look box of the same digit measures the same digit
COLUMN_HEIGHTS = 1.5  # digits chained one above the other are at most this many times as tall as each other


def check_search_tiles(value: int) -> int:
    """`value` when it is a valid `ZoomParams.search_tiles` (0 = off, or >= 2); else ValueError."""
    if value < 0 or value == 1:
        raise ValueError(f"search_tiles must be 0 (off) or >= 2, got {value}")
    return value


@dataclass(frozen=True)
class ZoomParams:
    """When and how to take the second look. `below_px` 0 turns it off.

    The first pass's detections scoring at least `locate_score` locate the number. If their median
    height, at the model's input scale, is under `below_px`, the crop is their union widened by
    `margin_x` median heights left and right (room for a digit the first pass missed) and `margin_y`
    above and below (where they stand in a column, `models.assembly.is_column`: `margin_x` above and
    below too, room for a digit missed at either end), clipped to the image. A crop the model would
    enlarge by less than `min_gain` over the whole image is not worth a second pass. The second
    pass's detections replace the first's (their boxes averaged with the first's where `fuse_first`
    asks).

    When the first pass locates nothing, `search_tiles` n > 0 (with the second look on: `below_px` > 0)
    searches the image in n x n tiles (each 2 / (n + 1) of its width and height, overlapping by half a
    tile: 3 -> 9 tiles at twice the scale), provided each tile has at least the model's `min_size` px on
    its shorter side (no search of images the model already sees at their own resolution or larger);
    with `search_tiles_max` m > n, in as many tiles a side as fit, up to m (`tile_count`: a larger
    photo's tiles at a larger scale; experiment 113). A photo that the model's `max_size` shrinks by
    `min_gain` or more (one 5 or more times as wide as high, for the shipped model) is cut into
    more tiles along its length, or into a strip of tiles where none fit across (`search_tiles`,
    experiment 153). With `search_near` s > 0, a photo whose first pass
    locates something (searched for `search_located`) is searched only in the tiles that one of the
    first pass's detections scoring at least s and no taller than the tile overlaps (`near_tiles`:
    the first pass, blurred as it is at the whole photo's scale, still marks where digits may be;
    experiment 114), in every tile where none does; a photo whose first pass locates nothing is
    searched in every tile. The
    tiles' detections, without those cut by a tile's inner edge, then locate the number for the second
    look, or stand as the answer where it is not taken; where the tiles locate nothing either, the first
    pass stands.
    With `search_located`, the search also runs where the first pass does locate something (the tiles
    fitting), and what the tiles locate replaces it the same way: in a large photo the first pass, at
    a fraction of a digit's pixels, often locates clutter or part of the number (experiment 111).
    `search_below_p` < 1 limits that to photos read doubtfully without it (`search_again`); this module
    does not apply it: the pipeline that owns the number verifier reads the photo without the search
    of located photos, then again with it where `search_again` asks (experiment 112). 1 = no limit.

    When the located number (`number_cluster`) reaches nearer than `side_look` x its median digit
    height to the image's left or right side (0 = off; with the second look on), the side look
    (`detect_with_zoom`) reads the image again, widened, and takes that reading when it holds more
    digits scoring at least `side_score` (the assembly's threshold, 0.6 in the shipped model).

    With `fuse_first` w > 0, each box the second look keeps becomes the score-weighted average of
    itself and the first pass's boxes of the same digit at IoU >= `FUSE_IOU` with it, those counted
    w times (`fuse_passes`); 0 keeps the second look's boxes as they are.
    """

    below_px: float = 0.0
    locate_score: float = 0.3
    margin_x: float = 1.5
    margin_y: float = 0.3
    min_gain: float = 1.25
    search_tiles: int = 0
    search_tiles_max: int = 0
    search_near: float = 0.0
    search_located: bool = False
    search_below_p: float = 1.0
    side_look: float = 0.0
    side_score: float = 0.6
    fuse_first: float = 0.0

    def __post_init__(self) -> None:
        if min(self.below_px, self.margin_x, self.margin_y, self.side_look, self.fuse_first) < 0:
            raise ValueError("below_px, margin_x, margin_y, side_look and fuse_first must be >= 0")
        probabilities = (self.locate_score, self.side_score, self.search_below_p, self.search_near)
        if not all(0.0 <= v <= 1.0 for v in probabilities):
            raise ValueError(
                f"locate_score, side_score, search_below_p and search_near must be in [0, 1], got {self}"
            )
        if self.min_gain < 1.0:
            raise ValueError(f"min_gain must be >= 1, got {self.min_gain}")
        check_search_tiles(self.search_tiles)
        if self.search_tiles_max < 0:
            raise ValueError(f"search_tiles_max must be >= 0, got {self.search_tiles_max}")

    @property
    def enabled(self) -> bool:
        return self.below_px > 0

    @property
    def gated(self) -> bool:
        """Whether located photos are searched only where read doubtfully (`search_again`)."""
        return self.enabled and self.search_tiles > 0 and self.search_located and self.search_below_p < 1.0

    def with_trigger(
        self,
        below_px: float | None,
        search_tiles: int | None = None,
        side_look: float | None = None,
        fuse_first: float | None = None,
        search_located: bool | None = None,
        search_below_p: float | None = None,
        search_tiles_max: int | None = None,
        search_near: float | None = None,
    ) -> ZoomParams:
        """These settings with another `below_px`, `search_tiles`, `side_look`, `fuse_first`,
        `search_located`, `search_below_p`, `search_tiles_max` and `search_near` (an operator's
        overrides); None keeps what is set."""
        return replace(
            self,
            below_px=self.below_px if below_px is None else below_px,
            search_tiles=self.search_tiles if search_tiles is None else search_tiles,
            side_look=self.side_look if side_look is None else side_look,
            fuse_first=self.fuse_first if fuse_first is None else fuse_first,
            search_located=self.search_located if search_located is None else search_located,
            search_below_p=self.search_below_p if search_below_p is None else search_below_p,
            search_tiles_max=self.search_tiles_max if search_tiles_max is None else search_tiles_max,
            search_near=self.search_near if search_near is None else search_near,
        )


def input_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor by which torchvision's GeneralizedRCNNTransform resizes a `height` x `width` image."""
    return min(min_size / min(height, width), max_size / max(height, width))


def _near(d: Detection, member: Detection, gap: float) -> bool:
    """Whether `d` stands next to `member` as the next digit of one number would: of a similar
    height, and either beside it, at most `gap` x `member`'s height away along x with centres at
    most the smaller of their two heights apart along y (before experiment 116 the larger of the
    two, since `number_cluster` links either way round: a tall clutter box above a number then
    chained to it through a digit-sized false digit), or above or below it, as in a column
    (experiment 158): of heights within `COLUMN_HEIGHTS` of each other (a column's digits share a
    height; a clutter box 1.8 x a digit's height above a number in a scene chained to it otherwise),
    overlapping it along x by at least `COLUMN_OVERLAP_X` x the narrower one's width, at most (1 +
    `gap`) x the shorter one's height away along y. A digit is about half as wide as it is high, so
    `gap` heights along a row leave room for a digit the first pass missed between two it found;
    along a column that takes a height more."""
    box, other = d.box_xyxy, member.box_xyxy
    h, h_d = box_height(other), box_height(box)
    if not 0.5 * h <= h_d <= 2.0 * h:
        return False
    across, down = span_overlap(box, other, 0), span_overlap(box, other, 1)
    apart_y = abs(box_center(box)[1] - box_center(other)[1])
    if -across <= gap * h and apart_y <= min(h, h_d):
        return True
    shorter, taller = min(h, h_d), max(h, h_d)
    return (
        taller <= COLUMN_HEIGHTS * shorter
        and across >= COLUMN_OVERLAP_X * min(box[2] - box[0], other[2] - other[0])
        and -down <= (1.0 + gap) * shorter
    )


def number_cluster(located: Sequence[Detection], gap: float) -> list[Detection]:
    """Of `located`, the group of detections that chain to each other digit by digit (`_near`) with
    the largest summed score: the number the second look should crop to, without confident clutter
    elsewhere in the photo. In `located`'s order."""
    groups: list[list[Detection]] = []
    for d in located:
        linked = [g for g in groups if any(_near(d, m, gap) or _near(m, d, gap) for m in g)]
        merged = [d] + [m for g in linked for m in g]
        groups = [g for g in groups if all(g is not x for x in linked)] + [merged]
    best = max(groups, key=lambda g: sum(d.score for d in g))
    return [d for d in located if any(d is m for m in best)]


def located_number(detections: Sequence[Detection], min_score: float, gap: float) -> list[Detection]:
    """The number among the `detections` scoring at least `min_score` (`number_cluster`, chained at
    `gap` digit heights); empty when none does."""
    located = [d for d in detections if d.score >= min_score]
    return number_cluster(located, gap) if located else []


def zoom_region(
    detections: Sequence[Detection],
    height: int,
    width: int,
    min_size: int,
    max_size: int,
    params: ZoomParams,
) -> CropXYXY | None:
    """The crop for a second pass over a `height` x `width` image, or None when none is needed.

    `detections` are the first pass's, boxes xyxy in original-image pixels; `min_size`/`max_size` are
    the detector's input size. The crop is around the best group of located detections that chain
    digit by digit (`number_cluster`), so that confident clutter elsewhere in a large photo does not
    widen it; around a column (`models.assembly.is_column`) it leaves as much room above and below
    as beside.
    """
    located = located_number(detections, params.locate_score, params.margin_x) if params.enabled else []
    if not located:
        return None
    digit_h = statistics.median(box_height(d.box_xyxy) for d in located)
    if digit_h * input_scale(height, width, min_size, max_size) >= params.below_px:
        return None
    margin_y = params.margin_x if is_column([d.box_xyxy for d in located]) else params.margin_y
    x1 = max(0, int(min(d.box_xyxy[0] for d in located) - params.margin_x * digit_h))
    y1 = max(0, int(min(d.box_xyxy[1] for d in located) - margin_y * digit_h))
    x2 = min(width, int(max(d.box_xyxy[2] for d in located) + params.margin_x * digit_h) + 1)
    y2 = min(height, int(max(d.box_xyxy[3] for d in located) + margin_y * digit_h) + 1)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    gain = input_scale(y2 - y1, x2 - x1, min_size, max_size) / input_scale(height, width, min_size, max_size)
    return (x1, y1, x2, y2) if gain >= params.min_gain else None


def shift_detections(detections: Sequence[Detection], dx: float, dy: float) -> list[Detection]:
    """Move boxes found in a crop whose top-left corner is (dx, dy) back into the whole image's pixels."""
    return [
        Detection(
            box_xyxy=(d.box_xyxy[0] + dx, d.box_xyxy[1] + dy, d.box_xyxy[2] + dx, d.box_xyxy[3] + dy),
            digit=d.digit,
            score=d.score,
        )
        for d in detections
    ]


def fuse_passes(
    second: Sequence[Detection], first: Sequence[Detection], first_weight: float
) -> list[Detection]:
    """`second` (the second look's detections, xyxy in the image's pixels) with each box replaced by
    the average of it and the boxes of `first` (the first pass's, same frame) of the same digit at IoU
    >= `FUSE_IOU` with it, weighted by score, those of `first` by score x `first_weight`. Digits and
    scores are `second`'s; a box without such a match, or with `first_weight` 0, is kept."""
    if first_weight <= 0:
        return list(second)
    fused = []
    for d in second:
        mates = [f for f in first if f.digit == d.digit and box_iou(f.box_xyxy, d.box_xyxy) >= FUSE_IOU]
        weights = [d.score] + [first_weight * f.score for f in mates]
        boxes = [d.box_xyxy] + [f.box_xyxy for f in mates]
        total = sum(weights)
        if not mates or total <= 0:
            fused.append(d)
            continue
        x1, y1, x2, y2 = (
            sum(w * b[k] for w, b in zip(weights, boxes, strict=True)) / total for k in range(4)
        )
        fused.append(replace(d, box_xyxy=(x1, y1, x2, y2)))
    return fused


def input_sizes(model: FasterRCNN) -> tuple[int, int]:
    """The detector's (min_size, max_size) at test time: the shorter side it resizes an image to, and
    the longest side it lets one keep."""
    return int(model.transform.min_size[-1]), int(model.transform.max_size)


def detect_alone(model: FasterRCNN, image: torch.Tensor) -> list[Detection]:
    """The detector's findings in one image (float RGB FloatTensor[3, H, W] in [0, 1] on the model's
    device), boxes xyxy in its pixels, from a call of its own.

    One image per call, so that an image's answer never depends on what it is batched with: torchvision
    pads every image of a batch to the largest one's size, which changes the features near the right
    and bottom edges of the others, and the int8 box head (models/int8.py) scales its input over the
    whole batch. Batches of 16 read 14 of the 807 validation numbers otherwise than one image at a time
    (model card, experiment 40), and the service, which batches under load, would have answered the
    same photo differently by load. 8 validation images of similar sizes took ~13 % less per image
    batched on 2 CPU cores, but through the service, where sizes vary, throughput did not fall."""
    return outputs_to_detections(model([image])[0])


def search_tiles(
    height: int, width: int, tiles: int, min_size: int, max_size: int | None = None, min_gain: float = 1.0
) -> list[CropXYXY]:
    """The search pass's crops over a `height` x `width` image, row by row: `tiles` x `tiles` tiles,
    each 2 / (`tiles` + 1) of the image's height and width, at steps of half a tile, so that anything
    up to half a tile across lies whole in one of them. Without `max_size`, empty when `tiles` < 2 or
    a tile's shorter side would be under `min_size` px (the model would enlarge the tile's own pixels).

    With the model's `max_size`, a long, narrow image is also cut along its longer side (a strip,
    experiment 153). The model sees an image no longer than `max_size` px, so one more than `max_size`
    / `min_size` times as long as it is high reaches it shrunk below `min_size` on its shorter side, its
    digits with it: a 12:1 strip 32 px high is seen 32 px high instead of 96. Where tiles as above
    would be shrunk so by at least `min_gain` (`ZoomParams.min_gain`: less is not worth the passes),
    there are as many tiles along the longer side as keep each within that ratio (`strip_count`),
    each then seen at the scale `min_size` gives it; across, `tiles` where they fit as above, else
    one, the whole shorter side. Other images get what they get without `max_size`."""
    if tiles < 2:
        return []
    across = tiles if 2 * min(height, width) >= min_size * (tiles + 1) else 1
    along = across if max_size is None else strip_count(height, width, across, min_size, max_size, min_gain)
    if across * along < 2:
        return []
    rows_n, cols_n = (across, along) if width >= height else (along, across)
    tile_h, tile_w = 2 * height / (rows_n + 1), 2 * width / (cols_n + 1)
    rows = [(round(r * tile_h / 2), min(height, round(r * tile_h / 2 + tile_h))) for r in range(rows_n)]
    cols = [(round(c * tile_w / 2), min(width, round(c * tile_w / 2 + tile_w))) for c in range(cols_n)]
    return [(x1, y1, x2, y2) for y1, y2 in rows for x1, x2 in cols]


def strip_count(height: int, width: int, across: int, min_size: int, max_size: int, min_gain: float) -> int:
    """How many tiles `search_tiles` cuts along the longer side of a `height` x `width` image cut into
    `across` tiles on its shorter side (each 2 / (n + 1) of a side; 1 = the whole side): `across`,
    unless such square-cut tiles would reach the model shrunk to fit its `max_size` by `min_gain` or
    more; then as many as keep each tile's longer side within `max_size` / `min_size` times its
    shorter."""
    shorter, longer = min(height, width), max(height, width)
    tile_short, tile_long = 2 * shorter / (across + 1), 2 * longer / (across + 1)
    shrink = tile_long * min_size / (tile_short * max_size)  # > 1: by how much max_size shrinks the tile
    if shrink < min_gain:
        return across
    return max(across, math.ceil(2 * longer * min_size / (max_size * tile_short) - 1 - 1e-9))


def tile_count(height: int, width: int, params: ZoomParams, min_size: int) -> int:
    """How many tiles a side the search of a `height` x `width` photo uses: `params.search_tiles`, or
    with `params.search_tiles_max` above it the most that fit (each tile at least `min_size` px on its
    shorter side, `search_tiles`), up to that; 0 (no search) where `search_tiles` is 0."""
    if params.search_tiles == 0 or params.search_tiles_max <= params.search_tiles:
        return params.search_tiles
    fit = 2 * min(height, width) // min_size - 1
    return max(params.search_tiles, min(params.search_tiles_max, fit))


def near_tiles(
    tiles: Sequence[CropXYXY], detections: Sequence[Detection], min_score: float
) -> list[CropXYXY]:
    """Those of `tiles` (xyxy crops of an image) that a box of `detections` (xyxy, the same image's
    pixels) scoring at least `min_score` and no taller than the tile overlaps, in their order; all of
    them where none does or `min_score` is 0. A box taller than a tile is no digit the search, whose
    tiles show digits up to half a tile high whole, is for: in a large photo it is clutter, and the
    number may lie anywhere (experiment 114)."""
    marks = [d.box_xyxy for d in detections if d.score >= min_score] if min_score > 0 else []
    near = [
        t
        for t in tiles
        if any(
            b[0] < t[2] and t[0] < b[2] and b[1] < t[3] and t[1] < b[3] and b[3] - b[1] <= t[3] - t[1]
            for b in marks
        )
    ]
    return near or list(tiles)


def clear_of_inner_edges(box: BoxXYXY, tile: CropXYXY, height: int, width: int, margin: float = 2.0) -> bool:
    """Whether `box` (xyxy, image pixels), found in `tile` of a `height` x `width` image, stays more
    than `margin` px inside every tile edge that is not the image's own: a box that reaches such an
    edge may hold a digit cut in two, which the overlapping tile beside it sees whole."""
    x1, y1, x2, y2 = box
    tx1, ty1, tx2, ty2 = tile
    return (
        (tx1 == 0 or x1 > tx1 + margin)
        and (ty1 == 0 or y1 > ty1 + margin)
        and (tx2 == width or x2 < tx2 - margin)
        and (ty2 == height or y2 < ty2 - margin)
    )


def search(model: FasterRCNN, image: torch.Tensor, tiles: Sequence[CropXYXY], iou: float) -> list[Detection]:
    """The search pass over `image` (float RGB FloatTensor[3, H, W] in [0, 1]): the detections of
    each of `tiles` (xyxy crops of it, `search_tiles`, each detected alone), boxes xyxy in the image's
    pixels, without those cut by a tile's inner edge, and of the same digit found in two overlapping
    tiles (IoU > `iou`) only the better scored. Empty without tiles."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    found: list[Detection] = []
    for tile in tiles:
        x1, y1, x2, y2 = tile
        shifted = shift_detections(detect_alone(model, image[:, y1:y2, x1:x2]), x1, y1)
        found += [d for d in shifted if clear_of_inner_edges(d.box_xyxy, tile, height, width)]
    if not found:
        return []
    keep = batched_nms(
        torch.tensor([d.box_xyxy for d in found], dtype=torch.float32),
        torch.tensor([d.score for d in found], dtype=torch.float32),
        torch.tensor([d.digit for d in found]),
        iou,
    )
    return [found[i] for i in keep.tolist()]


def near_a_side(detections: Sequence[Detection], width: int, params: ZoomParams) -> bool:
    """Whether the number that `detections` locate (`number_cluster` of those scoring at least
    `params.locate_score`; boxes xyxy in the pixels of an image `width` px wide) reaches nearer than
    `params.side_look` x its median digit height to the image's left or right side."""
    number = located_number(detections, params.locate_score, params.margin_x) if params.side_look > 0 else []
    if not number:
        return False
    height = statistics.median(box_height(d.box_xyxy) for d in number)
    left, right = min(d.box_xyxy[0] for d in number), max(d.box_xyxy[2] for d in number)
    return min(left, width - right) < params.side_look * height


def widen(image: torch.Tensor, pad: int) -> torch.Tensor:
    """`image` (FloatTensor[3, H, W]) with `pad` columns of its mean colour added on each side:
    FloatTensor[3, H, W + 2 pad]."""
    side = image.mean(dim=(1, 2), keepdim=True).expand(-1, image.shape[-2], pad)
    return torch.cat([side, image, side], dim=-1)


def uncut(detections: Sequence[Detection], width: int) -> list[Detection]:
    """`detections` (boxes xyxy in the pixels of an image `width` px wide) without those within
    `SIDE_CUT` of their own height of the image's left or right side: digits the side may cut."""
    return [
        d
        for d in detections
        if d.box_xyxy[0] >= SIDE_CUT * box_height(d.box_xyxy)
        and d.box_xyxy[2] <= width - SIDE_CUT * box_height(d.box_xyxy)
    ]


def located_length(detections: Sequence[Detection], params: ZoomParams) -> int:
    """How many digits the number read in `detections` holds (`number_cluster` of those scoring at
    least `params.side_score`, the score at which a digit is read); 0 when none is read."""
    return len(located_number(detections, params.side_score, params.margin_x))


def locates(detections: Sequence[Detection], params: ZoomParams) -> bool:
    """Whether any of `detections` scores at least `params.locate_score`."""
    return any(d.score >= params.locate_score for d in detections)


def search_again(
    height: int,
    width: int,
    min_size: int,
    max_size: int,
    params: ZoomParams,
    located: bool,
    p_correct: float | None,
) -> bool:
    """Whether a gated pipeline (`params.gated`) reads a `height` x `width` photo again with the search
    of located photos: where its first pass `located` something (elsewhere the search has run
    already), the photo is large enough for the tiles (`search_tiles` at the model's `min_size`), and
    the reading without it is doubtful: no number read (`p_correct` None) or the verifier's p_correct
    under `params.search_below_p`."""
    return (
        params.gated
        and located
        and bool(search_tiles(height, width, params.search_tiles, min_size, max_size, params.min_gain))
        and (p_correct is None or p_correct < params.search_below_p)
    )


def first_reading(params: ZoomParams) -> ZoomParams:
    """The settings of a gated pipeline's first reading (`search_again`): those of `params` without the
    search of photos whose first pass locates something."""
    return replace(params, search_located=False)


def detect_with_zoom(
    model: FasterRCNN,
    images: list[torch.Tensor],
    params: ZoomParams,
    first: list[list[Detection]] | None = None,
) -> list[list[Detection]]:
    """Detections for each of `images` (float RGB FloatTensor[3, H, W] in [0, 1] on the model's device),
    boxes xyxy in that image's pixels: a pass over each image (`detect_alone`); where it locates
    nothing, a search over tiles of the image when `params.search_tiles` asks for one (`search`);
    then a second pass over the crop of each image that needs one (`look_again`). Where the number then
    reaches near the image's left or right side (`near_a_side`, `params.side_look`), the same over
    the image widened by `SIDE_PAD` x its height on each side (`widen`), whose detections, mapped
    back and without those the image's sides may cut (`uncut`), replace the first when they locate
    a longer number (`located_length`). `first`, when given, holds each image's first pass already
    run (`detect_alone`), which is then not run again. Call under torch.inference_mode() with the
    model in eval mode."""
    found = [detect_alone(model, image) for image in images] if first is None else [list(f) for f in first]
    if not params.enabled:
        return found
    for i, image in enumerate(images):
        found[i] = look_again(model, image, found[i], params)
        width = int(image.shape[-1])
        if near_a_side(found[i], width, params):
            pad = max(1, round(SIDE_PAD * int(image.shape[-2])))
            wide_image = widen(image, pad)
            wide = look_again(model, wide_image, detect_alone(model, wide_image), params)
            side = uncut(shift_detections(wide, -pad, 0), width)
            if located_length(side, params) > located_length(found[i], params):
                found[i] = side
    return found


def look_again(
    model: FasterRCNN, image: torch.Tensor, found: list[Detection], params: ZoomParams
) -> list[Detection]:
    """One image's detections after its first pass `found` (as in `detect_with_zoom`, without the
    side look): the search where the first pass locates nothing (or always, `search_located`), then
    the second look where the number is small, its boxes fused with those found before it
    (`fuse_passes`, `params.fuse_first`)."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    min_size, max_size = input_sizes(model)
    located = locates(found, params)
    if params.search_tiles and (params.search_located or not located):
        count = tile_count(height, width, params, min_size)
        crops = search_tiles(height, width, count, min_size, max_size, params.min_gain)
        if params.search_near > 0 and located:
            crops = near_tiles(crops, found, params.search_near)
        tiled = search(model, image, crops, float(model.roi_heads.nms_thresh))
        found = tiled if locates(tiled, params) else found
    region = zoom_region(found, height, width, min_size, max_size, params)
    if region is not None:
        x1, y1, x2, y2 = region
        second = shift_detections(detect_alone(model, image[:, y1:y2, x1:x2]), x1, y1)
        found = fuse_passes(second, found, params.fuse_first)
    return found
