"""models.roi_align: the windowed RoIAlign pools what torchvision's RoIAlign pools."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from models import roi_align as windowed
from models.roi_align import WindowedMultiScaleRoIAlign, axis_weights, roi_align_windowed


def _rois(count: int, images: int, width: float, height: float, seed: int) -> torch.Tensor:
    """[count, 5] RoIs in input pixels: small digit-like boxes, tiny and whole-image ones, and boxes
    that reach or cross the image's right and bottom edges."""
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height])
    size = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.4 + 0.1
    boxes = torch.cat([corner, corner + size], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, width, height])  # the whole image
    boxes[1] = torch.tensor([width - 2.0, height - 2.0, width + 6.0, height + 6.0])  # past the edges
    boxes[2] = torch.tensor([5.0, 5.0, 5.2, 5.1])  # under one cell
    index = torch.randint(0, images, (count, 1), generator=generator).float()
    return torch.cat([index, boxes], dim=1)


@pytest.mark.parametrize(
    ("images", "ratio", "output", "channels_last"),
    [
        (1, 2, (7, 7), True),
        (1, 2, (7, 7), False),
        (2, 2, (7, 7), True),
        (1, 1, (3, 5), False),
        (2, 3, (4, 4), True),
    ],
)
def test_windowed_roi_align_matches_torchvision(
    images: int, ratio: int, output: tuple[int, int], channels_last: bool
) -> None:
    torch.manual_seed(0)
    features = torch.randn(images, 16, 24, 56)
    if channels_last:
        features = features.to(memory_format=torch.channels_last)
    rois = _rois(60, images, width=224.0, height=96.0, seed=1)
    want = roi_align(features, rois, output, 0.25, ratio)
    got = roi_align_windowed(features, rois, output, 0.25, ratio)
    assert got.shape == (60, 16, *output)
    assert want.abs().amax() > 1.0  # the comparison is on real values, not zeros
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_windowed_roi_align_in_chunks_pools_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    features = torch.randn(1, 8, 24, 56)
    rois = _rois(40, 1, width=224.0, height=96.0, seed=2)
    whole = roi_align_windowed(features, rois, (7, 7), 0.25, 2)
    monkeypatch.setattr(windowed, "WINDOW_BUDGET", 1000)  # a few RoIs per chunk
    torch.testing.assert_close(roi_align_windowed(features, rois, (7, 7), 0.25, 2), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("images", [1, 2])
def test_every_roi_windowed_however_large(monkeypatch: pytest.MonkeyPatch, images: int) -> None:
    # By default the whole-image RoI goes to torchvision's kernel; here every RoI is windowed.
    monkeypatch.setattr(windowed, "WINDOW_CELLS_PER_SAMPLE", 1e9)
    features = torch.randn(images, 8, 24, 56)
    rois = _rois(30, images, width=224.0, height=96.0, seed=5)
    want = roi_align(features, rois, (7, 7), 0.25, 2)
    torch.testing.assert_close(roi_align_windowed(features, rois, (7, 7), 0.25, 2), want, rtol=0, atol=1e-4)


def test_no_rois_and_an_adaptive_ratio() -> None:
    features = torch.randn(2, 8, 12, 20)
    assert roi_align_windowed(features, torch.zeros(0, 5), (7, 7), 0.25, 2).shape == (0, 8, 7, 7)
    with pytest.raises(ValueError, match="sampling ratio"):
        roi_align_windowed(features, _rois(5, 2, 80.0, 48.0, seed=3), (7, 7), 0.25, 0)


def test_axis_weights_average_the_bilinear_samples_of_each_bin() -> None:
    # One RoI from cell 1.0 over 4 cells, 2 bins of 2 samples: samples at 1.5, 2.5 | 3.5, 4.5 (of 0-9).
    weights, index = axis_weights(torch.tensor([1.0]), torch.tensor([4.0]), size=10, bins=2, sampling_ratio=2)
    dense = torch.zeros(2, 10).index_add_(1, index[0], weights[0])
    want = torch.zeros(2, 10)
    want[0, 1:4] = torch.tensor([0.25, 0.5, 0.25])
    want[1, 3:6] = torch.tensor([0.25, 0.5, 0.25])
    torch.testing.assert_close(dense, want)
    assert torch.allclose(weights.sum(dim=2), torch.ones(1, 2))


@pytest.mark.parametrize("ratio", [2, 0])
def test_windowed_multiscale_pooler_matches_torchvision(ratio: int) -> None:
    torch.manual_seed(0)
    maps = OrderedDict(
        (name, torch.randn(2, 8, 96 // stride, 224 // stride).to(memory_format=torch.channels_last))
        for name, stride in (("0", 4), ("1", 8), ("2", 16), ("3", 32))
    )
    rois = _rois(50, 2, width=224.0, height=96.0, seed=4)
    boxes = [rois[rois[:, 0] == i, 1:].clamp(min=0).minimum(torch.tensor([224.0, 96.0] * 2)) for i in (0, 1)]
    shapes = [(96, 224), (96, 224)]
    plain = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, ratio)
    want = plain(maps, boxes, shapes)
    pooler = WindowedMultiScaleRoIAlign.like(plain)
    assert pooler.map_levels is not None  # the first call set the levels up; the copy keeps them
    levels = pooler.map_levels(boxes)
    assert len(set(levels.tolist())) >= 2  # several pyramid levels are pooled
    torch.testing.assert_close(pooler(maps, boxes, shapes), want, rtol=0, atol=1e-4)
