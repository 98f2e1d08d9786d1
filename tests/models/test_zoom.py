"""models.zoom: when a second pass is taken, over which crop or widened photo, and how its boxes come back."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from models.assembly import Detection
from models.detector import DETECTOR_PRESETS, build_detector
from models.labels import digit_to_label
from models.zoom import (
    ZoomParams,
    clear_of_inner_edges,
    detect_with_zoom,
    first_reading,
    fuse_passes,
    input_scale,
    near_a_side,
    near_tiles,
    number_cluster,
    search_again,
    search_tiles,
    shift_detections,
    strip_count,
    tile_count,
    uncut,
    widen,
    zoom_region,
)
from tests.helpers import randomise_batchnorm

ON = ZoomParams(below_px=50, locate_score=0.3, margin_x=1.5, margin_y=0.3, min_gain=1.25)


def digit(x1: float, y1: float, x2: float, y2: float, value: int = 1, score: float = 0.875) -> Detection:
    return Detection(box_xyxy=(x1, y1, x2, y2), digit=value, score=score)


@pytest.mark.parametrize(("height", "width"), [(56, 126), (423, 741), (30, 400), (200, 90)])
def test_input_scale_matches_torchvisions_resize(height: int, width: int) -> None:
    transform = GeneralizedRCNNTransform(96, 384, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).eval()
    resized = transform([torch.rand(3, height, width)])[0].image_sizes[0]
    scale = input_scale(height, width, 96, 384)
    assert resized == (int(height * scale), int(width * scale))


def test_small_digits_in_a_large_photo_give_the_widened_union_as_crop() -> None:
    # 400 x 600 photo: scale 96/400 = 0.24, so 40 px digits are 9.6 px at the model's input
    found = [digit(300, 200, 320, 240), digit(322, 201, 342, 241), digit(10, 10, 30, 50, score=0.1)]
    crop = zoom_region(found, 400, 600, 96, 384, ON)
    # median height 40: 1.5 x 40 = 60 px left and right, 0.3 x 40 = 12 px above and below
    assert crop == (240, 188, 403, 254)


def test_digits_already_large_at_the_input_scale_need_no_second_pass() -> None:
    found = [digit(10, 5, 50, 50), digit(55, 5, 95, 50)]  # 45 px in a 56 px high image: ~77 px at input
    assert zoom_region(found, 56, 126, 96, 384, ON) is None


@pytest.mark.parametrize(
    ("found", "params"),
    [
        ([digit(300, 200, 320, 240)], ZoomParams(below_px=0)),  # off
        ([digit(300, 200, 320, 240, score=0.2)], ON),  # nothing scores locate_score
        ([], ON),
    ],
)
def test_no_crop_when_off_or_nothing_located(found: list[Detection], params: ZoomParams) -> None:
    assert zoom_region(found, 400, 600, 96, 384, params) is None


def test_crop_is_clipped_to_the_image() -> None:
    crop = zoom_region([digit(0, 390, 20, 400)], 400, 600, 96, 384, ON)
    assert crop is not None
    x1, y1, x2, y2 = crop
    assert (x1, y2) == (0, 400) and x2 == 20 + 15 + 1 and y1 == 390 - 3


def test_a_crop_the_model_would_hardly_enlarge_is_skipped() -> None:
    # small digits stepping down across the whole photo: the crop would be enlarged by < 1.25
    found = [digit(5 + 24 * i, 10 + 15 * i, 25 + 24 * i, 40 + 15 * i) for i in range(24)]
    assert zoom_region(found, 400, 600, 96, 384, ON) is None


def test_confident_clutter_apart_from_the_number_does_not_widen_the_crop() -> None:
    number = [digit(300, 200, 320, 240), digit(322, 201, 342, 241)]
    clutter = [digit(10, 10, 30, 50, score=0.95), digit(560, 350, 580, 390, score=0.5)]
    assert zoom_region(number + clutter, 400, 600, 96, 384, ON) == (240, 188, 403, 254)
    assert zoom_region(number, 400, 600, 96, 384, ON) == (240, 188, 403, 254)


def test_number_cluster_chains_digit_by_digit_and_keeps_the_best_scored_group() -> None:
    # a, b, c chain (a and c are 3 heights apart, each within 1.5 heights of b); d is far away
    a, b, c = (
        digit(100, 100, 120, 140, score=0.5),
        digit(150, 100, 170, 140, score=0.5),
        digit(200, 105, 220, 145),
    )
    d = digit(400, 300, 420, 340, score=0.99)
    assert number_cluster([d, a, b, c], gap=1.5) == [a, b, c]  # 1.875 against 0.99
    assert number_cluster([d, a], gap=1.5) == [d]
    # a digit three times as tall beside them is not one of theirs
    tall = digit(225, 60, 265, 180, score=0.99)
    assert number_cluster([a, b, c, tall], gap=1.5) == [a, b, c]


def test_number_cluster_does_not_chain_a_taller_box_through_a_row_below_it() -> None:
    # valid/102 in a 444 x 192 scene (experiment 116): a 22 px number "50", a 38 px false "1" right
    # of it, and above that a 73 px clutter box. The clutter box is within twice the "1"'s height and
    # its centre 70 px above it: within the clutter's height, not within the "1"'s.
    five, zero = digit(101, 104, 114, 126, score=0.955), digit(113, 103, 128, 125, score=0.466)
    one = digit(139, 97, 157, 135, score=0.596)
    clutter = digit(66, 9, 139, 82, score=0.55)
    assert number_cluster([five, one, clutter, zero], gap=1.5) == [five, one, zero]
    # a digit 0.4 of a height lower than its neighbour (a slanted or stepped number) still chains
    low = digit(160, 112, 178, 150, score=0.5)
    assert number_cluster([one, low], gap=1.5) == [one, low]


def test_number_cluster_chains_a_column_digit_by_digit() -> None:
    # three digits stacked, each a little left of the one above, a third of a height apart (experiment
    # 158): before, each was a number of its own and the second look cropped to one of them
    top, middle, bottom = digit(104, 100, 124, 140), digit(102, 153, 122, 193), digit(100, 206, 120, 246)
    assert number_cluster([top, middle, bottom], gap=1.5) == [top, middle, bottom]
    # 1.5 median heights (40 px) of room on every side, above and below too: a digit missed at
    # either end of the column is in the crop (a row gets 0.3 heights above and below)
    assert zoom_region([top, middle, bottom], 400, 600, 96, 384, ON) == (40, 40, 185, 307)
    # the middle digit missed by the first pass: its two neighbours, 1.65 heights apart, still chain
    assert number_cluster([top, bottom], gap=1.5) == [top, bottom]
    # a box under a digit more than 2.5 of its heights below it, or overlapping it by under half the
    # narrower width along x, is not the next digit of its column
    far = digit(100, 241, 120, 281, score=0.99)
    aside = digit(115, 153, 135, 193, score=0.99)
    assert number_cluster([top, far], gap=1.5) == [far] and number_cluster([top, aside], gap=1.5) == [aside]
    # valid/14497 ("431") in a 4 x scene: a 139 px clutter box above its 77-83 px digits, overlapping
    # them along x, is 1.8 x as tall: no digit of their column (it chained before COLUMN_HEIGHTS, the
    # crop then held clutter and number, and the service read nothing)
    four, three = digit(390, 363, 425, 446, score=0.96), digit(418, 367, 458, 444, score=0.97)
    clutter = digit(388, 130, 523, 269, score=0.38)
    assert number_cluster([three, four, clutter], gap=1.5) == [three, four]


def test_search_tiles_overlap_by_half_a_tile_and_cover_the_image() -> None:
    tiles = search_tiles(400, 600, 3, 96)
    assert len(tiles) == 9 and tiles[0] == (0, 0, 300, 200) and tiles[4] == (150, 100, 450, 300)
    assert tiles[-1] == (300, 200, 600, 400)
    assert len(search_tiles(400, 600, 7, 96)) == 49  # tiles 100 px high
    assert search_tiles(400, 600, 8, 96) == []  # tiles 89 px high: the model would enlarge them
    assert search_tiles(150, 600, 3, 96) == []
    assert search_tiles(400, 600, 0, 96) == []


@pytest.mark.parametrize(
    ("box", "kept"),
    [
        ((150, 50, 170, 80), True),  # inside
        ((0, 50, 20, 80), True),  # on the image's left edge, which is the tile's
        ((150, 50, 299, 80), False),  # reaches the tile's right edge, inside the image: maybe cut
        ((150, 185, 170, 199), False),  # reaches its bottom edge
    ],
)
def test_clear_of_inner_edges(box: tuple[float, float, float, float], kept: bool) -> None:
    assert clear_of_inner_edges(box, (0, 0, 300, 200), 400, 600) is kept


def test_shift_detections_moves_boxes_and_keeps_digits_and_scores() -> None:
    moved = shift_detections([digit(1, 2, 3, 4, value=7, score=0.8)], dx=10, dy=20)
    assert moved == [digit(11, 22, 13, 24, value=7, score=0.8)]


@pytest.mark.parametrize("below_px", [-1.0])
def test_zoom_params_refuse_negative_values(below_px: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        ZoomParams(below_px=below_px)
    with pytest.raises(ValueError, match="min_gain"):
        ZoomParams(min_gain=0.5)
    for tiles in (-1, 1):
        with pytest.raises(ValueError, match="search_tiles"):
            ZoomParams(search_tiles=tiles)
    with pytest.raises(ValueError, match="side_look and fuse_first must be >= 0"):
        ZoomParams(side_look=-0.5)
    with pytest.raises(ValueError, match="side_score, search_below_p and search_near must be in"):
        ZoomParams(side_score=1.5)
    with pytest.raises(ValueError, match="search_near must be in"):
        ZoomParams(search_near=-0.1)
    with pytest.raises(ValueError, match="and fuse_first must be >= 0"):
        ZoomParams(fuse_first=-1.0)


def test_with_trigger_overrides_only_what_is_given() -> None:
    assert ON.with_trigger(None) == ON
    assert ON.with_trigger(40, 3) == ZoomParams(below_px=40, search_tiles=3)
    assert ON.with_trigger(None, 0) == ON and ZoomParams(search_tiles=3).with_trigger(None).search_tiles == 3
    assert (
        ON.with_trigger(None, search_located=True).search_located and not ON.with_trigger(None).search_located
    )
    assert ON.with_trigger(None, None, 0.5) == ZoomParams(below_px=50, side_look=0.5)
    assert ZoomParams(side_look=0.5).with_trigger(None).side_look == 0.5
    assert ON.with_trigger(None, None, None, 2.0) == ZoomParams(below_px=50, fuse_first=2.0)
    assert ZoomParams(fuse_first=2.0).with_trigger(None).fuse_first == 2.0


def test_fuse_passes_averages_each_box_with_the_first_passs_boxes_of_its_digit() -> None:
    second = [digit(10, 10, 20, 30, value=1, score=0.75), digit(40, 10, 50, 30, value=2, score=0.9)]
    first = [
        digit(12, 10, 22, 30, value=1, score=0.5),  # IoU 0.67 with the first: fused
        digit(40, 10, 50, 30, value=7, score=0.9),  # same place, another digit: not fused
        digit(46, 10, 56, 30, value=2, score=0.9),  # same digit, IoU 0.25: not fused
    ]
    fused = fuse_passes(second, first, first_weight=2.0)
    # weights 0.75 (second look) and 2 x 0.5 (first pass): x1 = (0.75 * 10 + 1.0 * 12) / 1.75
    assert fused[0].box_xyxy == pytest.approx(((7.5 + 12) / 1.75, 10, (15 + 22) / 1.75, 30))
    assert (fused[0].digit, fused[0].score) == (1, 0.75)
    assert fused[1] == second[1]
    assert fuse_passes(second, first, first_weight=0.0) == second
    assert fuse_passes(second, [], first_weight=2.0) == second


def test_second_look_boxes_are_fused_with_the_first_pass_when_asked() -> None:
    first = [digit(300, 200, 320, 240, value=1, score=0.5)]
    in_crop = [digit(62, 13, 80, 52, value=1, score=0.75)]  # (302, 201, 320, 240) in the photo
    fuse = ON.with_trigger(None, fuse_first=1.0)
    (fused,) = detect_with_zoom(FakeDetector([[first], [in_crop]]), [torch.rand(3, 400, 600)], fuse)
    pairs = zip((300, 200, 320, 240), (302, 201, 320, 240), strict=True)
    assert len(fused) == 1 and (fused[0].digit, fused[0].score) == (1, 0.75)
    assert fused[0].box_xyxy == pytest.approx(tuple((0.5 * a + 0.75 * b) / 1.25 for a, b in pairs))
    (plain,) = detect_with_zoom(FakeDetector([[first], [in_crop]]), [torch.rand(3, 400, 600)], ON)
    assert plain == [digit(302, 201, 320, 240, value=1, score=0.75)]


class FakeDetector(nn.Module):
    """Answers each call with canned outputs, one list per call, and records the image sizes it saw."""

    def __init__(self, answers: list[list[list[Detection]]]) -> None:
        super().__init__()
        self.transform = GeneralizedRCNNTransform(96, 384, [0.0] * 3, [1.0] * 3)
        self.roi_heads = SimpleNamespace(nms_thresh=0.5)
        self.answers = answers
        self.seen: list[list[tuple[int, ...]]] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, Any]]:
        self.seen.append([tuple(image.shape) for image in images])
        return [_output(found) for found in self.answers[len(self.seen) - 1]]


def _output(found: list[Detection]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([d.box_xyxy for d in found], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([digit_to_label(d.digit) for d in found], dtype=torch.int64),
        "scores": torch.tensor([d.score for d in found], dtype=torch.float32),
    }


def test_detect_with_zoom_reruns_only_the_small_number_and_maps_its_boxes_back() -> None:
    small = [digit(300, 200, 320, 240, value=4)]
    large = [digit(10, 5, 50, 50, value=2)]
    in_crop = [digit(62, 13, 80, 52, value=1, score=0.75)]  # crop pixels; the crop is (240, 188, 381, 253)
    model = FakeDetector([[small], [large], [in_crop]])
    images = [torch.rand(3, 400, 600), torch.rand(3, 56, 126)]
    result = detect_with_zoom(model, images, ON)
    assert model.seen == [[(3, 400, 600)], [(3, 56, 126)], [(3, 253 - 188, 381 - 240)]]
    assert result[0] == [digit(302, 201, 320, 240, value=1, score=0.75)]
    assert result[1] == large


def test_detect_with_zoom_off_makes_one_call() -> None:
    model = FakeDetector([[[digit(300, 200, 320, 240)]]])
    result = detect_with_zoom(model, [torch.rand(3, 400, 600)], ZoomParams())
    assert len(model.seen) == 1 and result[0] == [digit(300, 200, 320, 240)]


def test_an_images_detections_do_not_depend_on_the_images_beside_it() -> None:
    """Each image is detected alone: batched with larger ones (which torchvision would pad it to), an
    image gets exactly the detections it gets on its own, second look included."""
    torch.manual_seed(0)
    model = build_detector(DETECTOR_PRESETS["fast"]).eval()
    randomise_batchnorm(model)
    params = ZoomParams(below_px=1000, locate_score=0.0, margin_x=1.5, margin_y=0.3, min_gain=1.0)
    images = [torch.rand(3, 56, 126), torch.rand(3, 90, 300), torch.rand(3, 120, 140)]
    with torch.inference_mode():
        together = detect_with_zoom(model, images, params)
        alone = [detect_with_zoom(model, [image], params)[0] for image in images]
    assert all(together) and together == alone


SEARCH = ZoomParams(below_px=50, search_tiles=3)


def test_search_over_tiles_locates_a_number_the_first_pass_missed() -> None:
    """400 x 600 photo, nothing located in the first pass: 9 tiles of 200 x 300 px, row by row. Tile 0
    sees the digit at (250, 100) whole; tile 1 (from x = 150) sees it too, duplicated; tile 3 sees a
    box cut by its right edge. The second look then crops around the digit."""
    first = [[[digit(10, 10, 30, 40, score=0.25)]]]
    tiles: list[list[list[Detection]]] = [[[]] for _ in range(9)]
    tiles[0] = [[digit(250, 100, 270, 130, value=5)]]
    tiles[1] = [[digit(100, 100, 120, 130, value=5, score=0.8)]]  # the same digit, in tile 1's pixels
    # tile 3 is (0, 100, 300, 300); its box reaches x = 299 (cut?), and would win the crop if kept
    tiles[3] = [[digit(280, 60, 299, 99, value=7, score=0.95)]]
    crop = [
        [[digit(30, 9, 50, 40, value=5, score=0.75)]]
    ]  # second look: 30 px digit, crop (205, 91, 316, 140)
    model = FakeDetector(first + tiles + crop)
    result = detect_with_zoom(model, [torch.rand(3, 400, 600)], SEARCH)
    assert [s[0] for s in model.seen[1:10]] == [(3, 200, 300)] * 9
    assert model.seen[10] == [(3, 140 - 91, 316 - 205)]
    assert result == [[digit(235, 100, 255, 131, value=5, score=0.75)]]


def test_search_keeps_the_first_pass_where_the_tiles_locate_nothing_either() -> None:
    first = [[[digit(10, 10, 30, 40, score=0.25)]]]
    model = FakeDetector(first + [[[digit(50, 50, 70, 80, score=0.2)]] for _ in range(9)])
    assert detect_with_zoom(model, [torch.rand(3, 400, 600)], SEARCH) == first[0]
    assert len(model.seen) == 10


def test_no_search_where_the_first_pass_locates_a_digit_or_the_photo_is_small() -> None:
    located = FakeDetector([[[digit(10, 5, 50, 50)]]])
    assert detect_with_zoom(located, [torch.rand(3, 56, 126)], SEARCH) == [[digit(10, 5, 50, 50)]]
    small = FakeDetector([[[]]])
    assert detect_with_zoom(small, [torch.rand(3, 150, 600)], SEARCH) == [[]]
    assert len(located.seen) == len(small.seen) == 1


def test_search_located_searches_where_the_first_pass_locates_clutter() -> None:
    """With `search_located`, a 400 x 600 photo whose first pass locates a large "digit" (clutter) is
    searched all the same; what the tiles locate replaces it, and the second look crops there."""
    first = [[[digit(10, 10, 200, 300, value=8, score=0.75)]]]
    tiles: list[list[list[Detection]]] = [[[]] for _ in range(9)]
    tiles[0] = [[digit(250, 100, 270, 130, value=5)]]
    crop = [[[digit(30, 9, 50, 40, value=5, score=0.75)]]]  # crop (205, 91, 316, 140)
    model = FakeDetector(first + tiles + crop)
    result = detect_with_zoom(model, [torch.rand(3, 400, 600)], replace(SEARCH, search_located=True))
    assert len(model.seen) == 11 and model.seen[10] == [(3, 140 - 91, 316 - 205)]
    assert result == [[digit(235, 100, 255, 131, value=5, score=0.75)]]
    plain = FakeDetector(first)
    assert detect_with_zoom(plain, [torch.rand(3, 400, 600)], SEARCH) == first[0] and len(plain.seen) == 1


def test_search_located_keeps_the_first_pass_where_the_tiles_locate_nothing() -> None:
    first = [[[digit(10, 10, 200, 300, value=8, score=0.75)]]]
    model = FakeDetector(first + [[[]] for _ in range(9)])
    assert (
        detect_with_zoom(model, [torch.rand(3, 400, 600)], replace(SEARCH, search_located=True)) == first[0]
    )
    assert len(model.seen) == 10
    small = FakeDetector([[[digit(10, 5, 50, 140)]]])  # too small for tiles: no search
    assert detect_with_zoom(small, [torch.rand(3, 150, 600)], replace(SEARCH, search_located=True)) == [
        [digit(10, 5, 50, 140)]
    ]
    assert len(small.seen) == 1


SIDE = ZoomParams(below_px=50, side_look=0.5)


def test_widen_adds_the_mean_colour_on_both_sides() -> None:
    image = torch.rand(3, 10, 20)
    wide = widen(image, 5)
    assert wide.shape == (3, 10, 30) and torch.equal(wide[:, :, 5:25], image)
    mean = image.mean(dim=(1, 2))
    for side in (wide[:, :, :5], wide[:, :, 25:]):
        assert torch.allclose(side, mean[:, None, None].expand(3, 10, 5))


def test_uncut_drops_digits_at_the_photos_sides() -> None:
    kept, left, right = digit(10, 0, 30, 40), digit(1, 0, 20, 40), digit(90, 0, 99.5, 40)
    assert uncut([kept, left, right], width=100) == [kept]  # within 0.05 x 40 = 2 px of a side


def test_near_a_side_measures_the_number_in_digit_heights() -> None:
    number = [digit(40, 8, 60, 48), digit(64, 8, 84, 48)]  # 40 px high, 42 px from the right of 126
    assert not near_a_side(number, 126, SIDE)  # 0.5 x 40 = 20 px
    assert near_a_side(number, 100, SIDE)  # 16 px from the right side
    assert not near_a_side(number, 100, ZoomParams(below_px=50))  # off
    faint = [digit(88, 8, 108, 48, score=0.2)]  # not located: nothing to measure
    assert not near_a_side(faint, 126, SIDE)


def test_side_look_reads_a_digit_the_photos_side_hid_and_maps_its_boxes_back() -> None:
    """126 x 56 photo, the number's right digit 18 px from the right side (under 0.5 x 40 px): the
    photo is read again widened by 28 px on each side (182 px). The wider reading finds a third digit
    (kept) and one the left side cuts (dropped), and holds more digits scoring 0.6: it replaces the
    first."""
    first = [digit(62, 8, 82, 48, value=2), digit(88, 8, 108, 48, value=3)]
    wider = [
        digit(90, 8, 110, 48, value=2),
        digit(116, 8, 136, 48, value=3),
        digit(138, 8, 152, 48, value=1, score=0.75),
        digit(29, 8, 45, 48, value=7),  # 1 px from the photo's own left side: cut
    ]
    model = FakeDetector([[first], [wider]])
    result = detect_with_zoom(model, [torch.rand(3, 56, 126)], SIDE)
    assert model.seen == [[(3, 56, 126)], [(3, 56, 182)]]
    assert result == [[digit(62, 8, 82, 48, 2), digit(88, 8, 108, 48, 3), digit(110, 8, 124, 48, 1, 0.75)]]


def test_side_look_keeps_the_first_reading_unless_the_wider_one_reads_more() -> None:
    first = [digit(62, 8, 82, 48, value=2), digit(88, 8, 108, 48, value=3)]
    same = [digit(90, 8, 110, 48, 2), digit(116, 8, 136, 48, 3), digit(138, 8, 152, 48, score=0.5)]
    model = FakeDetector([[first], [same]])  # the third digit scores under 0.6: not read
    assert detect_with_zoom(model, [torch.rand(3, 56, 126)], SIDE) == [first]
    assert len(model.seen) == 2
    number = [digit(40, 8, 60, 48), digit(64, 8, 84, 48)]
    centred = FakeDetector([[number]])
    assert detect_with_zoom(centred, [torch.rand(3, 56, 126)], SIDE) == [number]
    assert len(centred.seen) == 1  # far enough from both sides: no side look


GATED = replace(SEARCH, search_located=True, search_below_p=0.8)


@pytest.mark.parametrize(
    ("params", "height", "width", "located", "p_correct", "expected"),
    [
        (GATED, 400, 600, True, 0.5, True),
        (GATED, 400, 600, True, None, True),  # nothing read: as doubtful as can be
        (GATED, 400, 600, True, 0.8, False),  # sure enough
        (GATED, 400, 600, False, 0.5, False),  # located nothing: searched in the first reading already
        (GATED, 150, 600, True, 0.5, False),  # too small for the tiles
        (GATED, 32, 640, True, 0.5, True),  # too small for square tiles, but a 20:1 strip
        (GATED, 44, 202, True, 0.5, False),  # a 4.6:1 strip: shrunk by 1.15, under min_gain
        (replace(GATED, search_below_p=1.0), 400, 600, True, 0.5, False),  # no limit: searched at once
        (replace(GATED, search_located=False), 400, 600, True, 0.5, False),
        (replace(GATED, search_tiles=0), 400, 600, True, 0.5, False),
    ],
)
def test_search_again_only_doubtful_large_photos_whose_first_pass_located(
    params: ZoomParams, height: int, width: int, located: bool, p_correct: float | None, expected: bool
) -> None:
    assert search_again(height, width, 96, 384, params, located, p_correct) is expected


def test_the_search_limit_is_a_probability_and_gates_only_the_search_of_located_photos() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="search_below_p"):
            ZoomParams(search_below_p=bad)
    assert GATED.gated and not SEARCH.gated and not replace(GATED, search_below_p=1.0).gated
    assert not replace(GATED, below_px=0).gated
    assert first_reading(GATED) == replace(GATED, search_located=False) and not first_reading(GATED).gated
    assert ON.with_trigger(None, search_below_p=0.8).search_below_p == 0.8
    assert ON.with_trigger(None).search_below_p == 1.0 == ZoomParams().search_below_p


def test_first_passes_given_are_not_run_again() -> None:
    first = [[digit(10, 10, 200, 300, value=8, score=0.75)]]
    model = FakeDetector([[[]] for _ in range(9)])
    result = detect_with_zoom(model, [torch.rand(3, 400, 600)], replace(SEARCH, search_located=True), first)
    assert result == first and model.seen == [[(3, 200, 300)]] * 9  # the tiles only


def test_a_long_narrow_photo_is_cut_along_its_length_into_tiles_the_model_sees_unshrunk() -> None:
    """A 12:1 strip 32 px high reaches a model of min_size 96 / max_size 384 at 384 x 32: its digits a
    third of the size of the photo's alone. Cut into 5 tiles of 128 x 32 (4:1), each is seen at 384 x
    96."""
    tiles = search_tiles(32, 384, 3, 96, 384, 1.25)
    assert tiles == [(x, 0, x + 128, 32) for x in range(0, 320, 64)]  # whole height, half a tile apart
    assert all((x2 - x1) <= 4 * (y2 - y1) for x1, y1, x2, y2 in tiles)
    # standing up, the same along its height
    assert search_tiles(384, 32, 3, 96, 384, 1.25) == [(y1, x1, y2, x2) for x1, y1, x2, y2 in tiles]
    # without max_size, or with search_tiles off, no strip
    assert search_tiles(32, 384, 3, 96) == [] and search_tiles(32, 384, 0, 96, 384, 1.25) == []
    # a 4.6:1 photo would be shrunk by 1.15 only: not worth the passes at min_gain 1.25; at 1, two tiles
    assert search_tiles(44, 202, 3, 96, 384, 1.25) == []
    assert len(search_tiles(40, 200, 3, 96, 384, 1.25)) == 2  # 5:1: shrunk by 1.25, min_gain itself
    assert search_tiles(44, 202, 3, 96, 384, 1.0) == [(0, 0, 135, 44), (67, 0, 202, 44)]


@pytest.mark.parametrize(("height", "width"), [(400, 600), (150, 600), (44, 176), (1000, 1000), (600, 2400)])
def test_a_photo_within_max_size_over_min_size_gets_the_square_tiles(height: int, width: int) -> None:
    for tiles in (0, 2, 3, 4):
        assert search_tiles(height, width, tiles, 96, 384, 1.0) == search_tiles(height, width, tiles, 96)


def test_a_large_long_photo_gets_more_tiles_along_its_length() -> None:
    """400 x 4000 (10:1): 3 x 3 tiles of 200 x 2000 would be shrunk 2.5 x; 3 rows of 9 tiles of 200 x
    800 are not shrunk at all."""
    assert strip_count(400, 4000, 3, 96, 384, 1.25) == 9
    tiles = search_tiles(400, 4000, 3, 96, 384, 1.25)
    assert len(tiles) == 27 and tiles[0] == (0, 0, 800, 200) and tiles[-1] == (3200, 200, 4000, 400)
    assert strip_count(400, 1800, 3, 96, 384, 1.25) == 3  # 4.5:1, shrunk by 1.125 only


def test_the_search_cuts_a_strip_the_first_pass_locates_nothing_in() -> None:
    """A 20:1 strip, 32 x 640: nothing located at 384 x 19; 9 tiles of 128 x 32, each seen at 384 x 96.
    A digit found in tile 4 (x 256-384) locates the number, and the second look crops around it (x
    260-353: 1.5 digit heights either side; the whole height) and reads it there."""
    first: list[list[list[Detection]]] = [[[]]]
    tiles: list[list[list[Detection]]] = [[[]] for _ in range(9)]
    tiles[4] = [[digit(40, 4, 60, 28, value=3)]]
    second = [[digit(36, 4, 56, 28, value=3, score=0.75)]]
    model = FakeDetector([*first, *tiles, second])
    result = detect_with_zoom(model, [torch.rand(3, 32, 640)], SEARCH)
    assert model.seen == [[(3, 32, 640)]] + [[(3, 32, 128)]] * 9 + [[(3, 32, 93)]]  # x 260-353
    assert result == [[digit(296, 4, 316, 28, value=3, score=0.75)]]


@pytest.mark.parametrize(
    ("height", "width", "most", "expected"),
    [
        (400, 600, 0, 3),  # no most: always search_tiles
        (400, 600, 4, 4),  # up to 7 fit (tiles of 100 px), 4 at most
        (400, 600, 9, 7),  # the most that fit
        (224, 500, 4, 3),  # 4 x 4 tiles would be 89 px high
        (150, 600, 4, 3),  # not even 3 fit: search_tiles, which `search_tiles()` then refuses
    ],
)
def test_tile_count_takes_the_most_tiles_that_fit_up_to_search_tiles_max(
    height: int, width: int, most: int, expected: int
) -> None:
    count = tile_count(height, width, replace(SEARCH, search_tiles_max=most), 96)
    assert count == expected
    assert bool(search_tiles(height, width, count, 96)) == (height >= 192)  # what it asks for fits


def test_search_tiles_max_only_widens_a_search_that_is_on() -> None:
    with pytest.raises(ValueError, match="search_tiles_max"):
        ZoomParams(search_tiles_max=-1)
    # an operator's DIGITSERVE_SEARCH_TILES=0 turns the search off whatever the checkpoint's most
    assert tile_count(400, 600, replace(SEARCH, search_tiles=0, search_tiles_max=4), 96) == 0
    assert tile_count(400, 600, replace(SEARCH, search_tiles=3, search_tiles_max=2), 96) == 3


def test_the_search_uses_more_tiles_where_they_fit() -> None:
    first = [[[digit(10, 10, 200, 300, value=8, score=0.75)]]]
    model = FakeDetector(first + [[[]] for _ in range(16)])
    params = replace(SEARCH, search_located=True, search_tiles_max=4)
    assert detect_with_zoom(model, [torch.rand(3, 400, 600)], params) == first[0]
    assert model.seen[1:] == [[(3, 160, 240)]] * 16  # 4 x 4 tiles, each 2 / 5 of the photo


def test_near_tiles_keeps_the_tiles_a_first_pass_box_overlaps() -> None:
    tiles = search_tiles(400, 600, 3, 96)  # 200 x 300 px, at steps of 100 x 150
    marks = [digit(250, 100, 270, 130, score=0.1), digit(500, 350, 520, 380, score=0.04)]
    assert near_tiles(tiles, marks, 0.05) == [tiles[0], tiles[1], tiles[3], tiles[4]]
    assert near_tiles(tiles, marks, 0.01) == [tiles[0], tiles[1], tiles[3], tiles[4], tiles[8]]
    # a box taller than the tile marks nothing; one touching a tile's edge does not overlap it
    assert near_tiles(tiles, [*marks, digit(0, 0, 590, 390, score=0.9)], 0.05) == near_tiles(
        tiles, marks, 0.05
    )
    assert near_tiles(tiles, [digit(300, 200, 320, 230)], 0.05) == [tiles[4], tiles[5], tiles[7], tiles[8]]
    # none scoring enough, or no limit: every tile
    assert near_tiles(tiles, marks, 0.5) == near_tiles(tiles, marks, 0.0) == tiles
    assert near_tiles([], marks, 0.05) == []


def test_the_search_near_the_first_pass_runs_only_those_tiles() -> None:
    """The first pass of a 400 x 600 photo locates clutter at (10, 10, 200, 300), taller than a tile
    (200 px), and marks a digit at (250, 100, 270, 130) with 0.1: with `search_near` 0.05 the search
    runs only the 4 tiles the digit overlaps (0, 1, 3, 4); what tile 1 locates is read as before. A
    first pass that locates nothing, or marks nothing smaller than a tile, is searched in every tile."""
    clutter, mark = (
        digit(10, 10, 200, 300, value=8, score=0.75),
        digit(250, 100, 270, 130, value=5, score=0.1),
    )
    tiles: list[list[list[Detection]]] = [[[]] for _ in range(4)]
    tiles[1] = [[digit(100, 100, 120, 130, value=5, score=0.875)]]  # tile 1 is (150, 0, 450, 200)
    crop = [[[digit(30, 9, 50, 40, value=5, score=0.75)]]]  # crop (205, 91, 316, 140)
    model = FakeDetector([[[clutter, mark]], *tiles, *crop])
    params = replace(SEARCH, search_located=True, search_near=0.05)
    result = detect_with_zoom(model, [torch.rand(3, 400, 600)], params)
    assert model.seen[1:5] == [[(3, 200, 300)]] * 4 and model.seen[5] == [(3, 140 - 91, 316 - 205)]
    assert len(model.seen) == 6
    assert result == [[digit(235, 100, 255, 131, value=5, score=0.75)]]
    for first, near in (([clutter, mark], 0.0), ([clutter], 0.05), ([mark], 0.05)):
        every = FakeDetector([[first]] + [[[]] for _ in range(9)])
        kept = detect_with_zoom(every, [torch.rand(3, 400, 600)], replace(params, search_near=near))[0]
        assert [d.box_xyxy for d in kept] == [d.box_xyxy for d in first]  # the tiles located nothing
        assert len(every.seen) == 10
