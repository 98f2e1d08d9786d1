"""models.zoom: when a second pass is taken, over which crop, and how its boxes come back."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from models.assembly import Detection
from models.detector import DETECTOR_PRESETS, build_detector
from models.labels import digit_to_label
from models.zoom import ZoomParams, detect_with_zoom, input_scale, shift_detections, zoom_region
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
    # two small digits far apart span most of the photo: the crop would be enlarged by < 1.25
    found = [digit(5, 10, 25, 40), digit(570, 360, 590, 390)]
    assert zoom_region(found, 400, 600, 96, 384, ON) is None


def test_shift_detections_moves_boxes_and_keeps_digits_and_scores() -> None:
    moved = shift_detections([digit(1, 2, 3, 4, value=7, score=0.8)], dx=10, dy=20)
    assert moved == [digit(11, 22, 13, 24, value=7, score=0.8)]


@pytest.mark.parametrize("below_px", [-1.0])
def test_zoom_params_refuse_negative_values(below_px: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        ZoomParams(below_px=below_px)
    with pytest.raises(ValueError, match="min_gain"):
        ZoomParams(min_gain=0.5)


class FakeDetector(nn.Module):
    """Answers each call with canned outputs, one list per call, and records the image sizes it saw."""

    def __init__(self, answers: list[list[list[Detection]]]) -> None:
        super().__init__()
        self.transform = GeneralizedRCNNTransform(96, 384, [0.0] * 3, [1.0] * 3)
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
