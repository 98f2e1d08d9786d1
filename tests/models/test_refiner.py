"""The box refiner: edge corrections and their inverse, refining a batch of detections, and its
storage (round trip, a changed file refused, float16 copy with another step)."""

import json
from pathlib import Path

import pytest
import torch

from models.assembly import Detection
from models.boxes import box_iou
from models.refiner import (
    REFINER_META,
    REFINER_WEIGHTS,
    BoxRefiner,
    RefineParams,
    RefinerError,
    box_deltas,
    box_masks,
    copy_refiner,
    crop_boxes,
    has_refiner,
    load_refiner,
    refine_images,
    save_refiner,
    shift_box,
)


def test_deltas_are_fractions_of_the_box_and_shift_box_undoes_them() -> None:
    box, label = (10.0, 20.0, 30.0, 60.0), (12.0, 16.0, 29.0, 64.0)
    deltas = box_deltas(box, label)
    assert deltas == pytest.approx((0.1, -0.1, -0.05, 0.1))
    assert shift_box(box, deltas) == pytest.approx(label)
    half = shift_box(box, deltas, step=0.5)
    assert half == pytest.approx((11.0, 18.0, 29.5, 62.0))
    assert box_iou(box, label) < box_iou(half, label) < 1.0


def test_a_correction_that_would_turn_a_box_inside_out_keeps_a_sliver_at_its_centre() -> None:
    moved = shift_box((0.0, 0.0, 10.0, 20.0), (0.8, 0.0, -0.8, 0.0))
    assert moved == pytest.approx((4.5, 0.0, 5.5, 20.0))


@pytest.mark.parametrize("box_channel", [True, False])
def test_refiner_maps_crops_to_four_deltas_and_crops_are_cut_around_each_box(box_channel: bool) -> None:
    params = RefineParams(size=24, context=1.5, box_channel=box_channel)
    channels = 4 if box_channel else 3
    image = torch.zeros(3, 40, 80)
    image[:, 10:30, 20:30] = 1.0
    crops = crop_boxes(image, [(20.0, 10.0, 30.0, 30.0), (0.0, 0.0, 4.0, 4.0)], params)
    assert crops.shape == (2, channels, 24, 24)
    rgb = crops[:, :3]
    assert rgb[0].mean() > 0.2 and rgb[1].mean() < 0.05  # the bright digit is in the first only
    assert BoxRefiner(width=4, box_channel=box_channel).eval()(crops).shape == (2, 4)
    assert crop_boxes(image, [], params).shape == (0, channels, 24, 24)


def test_the_box_channel_shows_the_box_where_the_crop_cuts_it() -> None:
    params = RefineParams(size=30, context=1.5)
    image = torch.zeros(3, 60, 60)
    image[:, 10:30, 25:35] = 1.0  # a bright 10 x 20 px "digit"
    box = (25.0, 10.0, 35.0, 30.0)
    crop = crop_boxes(image, [box], params)[0]
    # window: a 30 px square around the box's centre (30, 20); 1 crop pixel = 1 image pixel
    mask = crop[3]
    assert torch.equal(mask, crop[:3].mean(0))  # the rectangle lies exactly on the bright pixels
    assert mask.sum() == pytest.approx(10 * 20) and mask[5:25, 10:20].min() == 1.0
    # a box whose edges fall inside crop pixels covers them in part
    wide = box_masks([(24.5, 10.0, 35.5, 30.0)], params)[0, 0]
    assert wide.shape == (30, 30) and wide[15, 9] == pytest.approx(0.5) and wide[15, 20] == pytest.approx(0.5)
    assert wide.sum() == pytest.approx(11 * 20)
    # only the shorter side tells two boxes with the same centre and height apart
    narrow = box_masks([(28.0, 10.0, 32.0, 30.0)], params)[0, 0]
    assert torch.equal(crop_boxes(image, [(28.0, 10.0, 32.0, 30.0)], params)[0, :3], crop[:3])
    assert narrow.sum() == pytest.approx(4 * 20)
    assert box_masks([], params).shape == (0, 1, 30, 30)


class _Constant(torch.nn.Module):
    """A stand-in refiner: moves every box's left edge right by a tenth of its width."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(crops))
        out = torch.zeros(len(crops), 4)
        out[:, 0] = 0.1
        return out


def test_refine_images_moves_every_box_in_one_call_and_keeps_digit_and_score() -> None:
    images = [torch.rand(3, 50, 100), torch.rand(3, 30, 60), torch.rand(3, 30, 60)]
    found = [
        [Detection((10, 10, 30, 40), 3, 0.9), Detection((40, 10, 60, 40), 5, 0.2)],
        [],
        [Detection((0, 0, 20, 30), 1, 0.7)],
    ]
    refiner = _Constant()
    out = refine_images(refiner, images, found, RefineParams(size=16, step=0.5, min_score=0.0))
    assert refiner.calls == [3]
    assert [[(d.digit, d.score) for d in dets] for dets in out] == [[(3, 0.9), (5, 0.2)], [], [(1, 0.7)]]
    assert [d.box_xyxy for d in out[0]] == [pytest.approx((11, 10, 30, 40)), pytest.approx((41, 10, 60, 40))]
    assert out[2][0].box_xyxy == pytest.approx((1, 0, 20, 30))
    assert refine_images(refiner, images[1:2], [[]], RefineParams()) == [[]] and refiner.calls == [3]


class _Judging(_Constant):
    """A stand-in refiner with a fit head: as `_Constant`, and a fit logit of 0, 1, 2, ... per box."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().forward(crops), torch.arange(len(crops), dtype=torch.float32)[:, None]], 1)


def test_a_fit_head_gives_each_refined_box_its_fit_and_task1_ranks_by_it() -> None:
    images = [torch.rand(3, 50, 100), torch.rand(3, 30, 60)]
    found = [
        [Detection((10, 10, 30, 40), 3, 0.9), Detection((40, 10, 60, 40), 5, 0.2)],
        [Detection((0, 0, 20, 30), 1, 0.7)],
    ]
    out = refine_images(_Judging(), images, found, RefineParams(size=16, step=1.0))
    fits = [d.fit for dets in out for d in dets]
    assert fits == pytest.approx(
        [0.5, torch.sigmoid(torch.tensor(1.0)).item(), torch.sigmoid(torch.tensor(2.0)).item()]
    )
    assert out[0][0].box_xyxy == pytest.approx((12, 10, 30, 40)) and out[0][0].score == 0.9  # score kept
    assert out[0][0].ranking_score == pytest.approx(0.45)
    assert all(
        d.fit is None
        for dets in refine_images(_Constant(), images, found, RefineParams(size=16))
        for d in dets
    )


class _Outward(torch.nn.Module):
    """A stand-in refiner: moves every edge outwards by half the box's size."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[-0.5, -0.5, 0.5, 0.5]]).repeat(len(crops), 1)


def test_a_box_moved_past_the_image_border_is_clamped_to_it() -> None:
    images = [torch.rand(3, 30, 60), torch.rand(3, 40, 20)]
    found = [
        [Detection((2, 4, 22, 28), 3, 0.9), Detection((20, 10, 30, 20), 4, 0.9)],
        [Detection((5, 5, 15, 35), 1, 0.9)],
    ]
    out = refine_images(_Outward(), images, found, RefineParams(size=16, step=1.0))
    assert out[0][0].box_xyxy == pytest.approx((0, 0, 32, 30))  # (-8, -8, 32, 40) before the clamp
    assert out[0][1].box_xyxy == pytest.approx((15, 5, 35, 25))  # inside: moved, not clamped
    assert out[1][0].box_xyxy == pytest.approx((0, 0, 20, 40))  # (0, -10, 20, 50)


def test_boxes_under_the_minimum_score_keep_the_detectors_box_and_cost_nothing() -> None:
    images = [torch.rand(3, 50, 100), torch.rand(3, 30, 60)]
    faint = [Detection((40, 10, 60, 40), 5, 0.2), Detection((0, 0, 9, 9), 1, 0.1)]
    found = [[Detection((10, 10, 30, 40), 3, 0.9), faint[0]], [faint[1]]]
    refiner = _Constant()
    out = refine_images(refiner, images, found, RefineParams(size=16, step=1.0, min_score=0.3))
    assert refiner.calls == [1]
    assert out[0][0].box_xyxy == pytest.approx((12, 10, 30, 40)) and (out[0][1], out[1][0]) == tuple(faint)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="bad refiner settings"):
        RefineParams(step=-0.1)
    with pytest.raises(ValueError, match="bad refiner settings"):
        RefineParams(context=0.5)
    with pytest.raises(ValueError, match="bad refiner settings"):
        RefineParams(min_score=1.5)


def _saved(folder: Path) -> BoxRefiner:
    torch.manual_seed(0)
    refiner = BoxRefiner(width=4).eval()
    save_refiner(folder, refiner, RefineParams(size=24, step=0.75), metrics={"iou": 0.8})
    return refiner


def test_refiner_round_trips_with_its_settings(tmp_path: Path) -> None:
    original = _saved(tmp_path)
    assert has_refiner(tmp_path) and not has_refiner(tmp_path / "elsewhere")
    loaded, meta = load_refiner(tmp_path)
    assert (meta.width, meta.params, meta.metrics) == (4, RefineParams(size=24, step=0.75), {"iou": 0.8})
    x = torch.rand(2, 4, 24, 24)
    assert not loaded.training and torch.equal(original(x), loaded(x))


def test_a_refiner_with_a_fit_head_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    judging = BoxRefiner(width=4, fit_head=True).eval()
    meta = save_refiner(tmp_path, judging, RefineParams(size=24))
    loaded, again = load_refiner(tmp_path)
    assert meta.fit_head and again.fit_head and loaded.fit_head
    x = torch.rand(2, 4, 24, 24)
    assert loaded(x).shape == (2, 5) and torch.equal(judging(x), loaded(x))
    assert not load_refiner(_saved_dir(tmp_path / "plain"))[1].fit_head


def _saved_dir(folder: Path) -> Path:
    _saved(folder)
    return folder


def test_copying_a_fit_head_to_another_step_warns_that_the_fit_was_learnt_for_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_refiner(tmp_path / "src", BoxRefiner(width=4, fit_head=True), RefineParams(size=24, step=0.75))
    with caplog.at_level("WARNING"):
        copy_refiner(tmp_path / "src", tmp_path / "same", step=0.75)
    assert "fit was learnt" not in caplog.text
    with caplog.at_level("WARNING"):
        copy_refiner(tmp_path / "src", tmp_path / "other", step=0.5)
    assert "fit was learnt for step 0.75, not 0.5" in caplog.text


def test_a_refiner_saved_before_the_box_channel_loads_as_rgb_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rgb = BoxRefiner(width=4, box_channel=False).eval()
    save_refiner(tmp_path, rgb, RefineParams(size=24, box_channel=False))
    doc = json.loads((tmp_path / REFINER_META).read_text())
    del doc["params"]["box_channel"]  # as experiment 17's refiner.json was written
    (tmp_path / REFINER_META).write_text(json.dumps(doc))
    loaded, meta = load_refiner(tmp_path)
    assert meta.params.box_channel is False and loaded.box_channel is False
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(rgb(x), loaded(x))


def test_settings_that_disagree_with_the_network_are_not_saved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="box_channel"):
        save_refiner(tmp_path, BoxRefiner(width=4, box_channel=False), RefineParams())
    assert not has_refiner(tmp_path)


def test_a_replaced_or_malformed_refiner_is_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "a")
    torch.manual_seed(1)
    save_refiner(tmp_path / "b", BoxRefiner(width=4), RefineParams())
    (tmp_path / "a" / REFINER_WEIGHTS).write_bytes((tmp_path / "b" / REFINER_WEIGHTS).read_bytes())
    with pytest.raises(RefinerError, match="does not match"):
        load_refiner(tmp_path / "a")
    (tmp_path / "b" / REFINER_META).write_text(json.dumps({"width": 4}))
    with pytest.raises(RefinerError, match="cannot load"):
        load_refiner(tmp_path / "b")


def test_copy_as_float16_keeps_the_answers_and_can_change_the_step(tmp_path: Path) -> None:
    original = _saved(tmp_path / "src")
    meta = copy_refiner(tmp_path / "src", tmp_path / "dst", dtype="float16", step=0.5)
    assert meta.dtype == "float16" and meta.params == RefineParams(size=24, step=0.5)
    assert (tmp_path / "dst" / REFINER_WEIGHTS).stat().st_size < 0.6 * (
        tmp_path / "src" / REFINER_WEIGHTS
    ).stat().st_size
    copied, _ = load_refiner(tmp_path / "dst")
    x = torch.rand(3, 4, 24, 24)
    assert torch.allclose(original(x), copied(x), atol=2e-3)
    assert copy_refiner(tmp_path / "src", tmp_path / "same").params.step == 0.75
