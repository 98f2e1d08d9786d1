from pathlib import Path

import pytest
import torch
from PIL import Image

from training.data import DigitBox, DigitDataset, ImageRecord
from training.mosaic import MosaicDataset, mosaic
from training.transforms import AugmentConfig

# (height, width, box XYXY, grey level of the box's pixels) of four photos of different sizes
PHOTOS = [
    (40, 80, (10, 5, 20, 25), 0.2),
    (20, 30, (3, 2, 9, 12), 0.4),
    (80, 60, (30, 40, 50, 70), 0.6),
    (40, 100, (60, 10, 90, 30), 0.8),
]


def photo(height: int, width: int, box: tuple[int, ...], level: float) -> tuple[torch.Tensor, dict]:
    """A black image with a box of grey `level`, its target labelled with the level's tenth."""
    image = torch.zeros(3, height, width)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = level
    target = {
        "boxes": torch.tensor([box], dtype=torch.float32),
        "labels": torch.tensor([round(level * 10)]),
        "image_id": round(level * 10),
    }
    return image, target


def test_mosaic_moves_each_box_with_its_pixels() -> None:
    images, targets = zip(*(photo(*p) for p in PHOTOS), strict=True)
    canvas, target = mosaic(images, targets, fill=(1.0, 1.0, 1.0))
    # every tile resized to the first photo's height (40): widths 80, 60, 30, 100
    assert canvas.shape == (3, 80, max(80 + 60, 30 + 100))
    assert target["labels"].tolist() == [2, 4, 6, 8] and target["image_id"] == 2
    tiles = [(0, 0, 80), (0, 80, 60), (40, 0, 30), (40, 30, 100)]  # (top, left, width) of each tile
    for box, (*_, level), (top, left, width) in zip(target["boxes"], PHOTOS, tiles, strict=True):
        x1, y1, x2, y2 = box.tolist()
        inside = canvas[0, round(y1) + 1 : round(y2) - 1, round(x1) + 1 : round(x2) - 1]
        assert torch.allclose(inside, torch.tensor(level), atol=1e-3)
        # and the box holds (within a pixel) every lit pixel of its tile: none of the digit lies outside
        ys, xs = torch.nonzero(canvas[0, top : top + 40, left : left + width] > 0.05, as_tuple=True)
        assert x1 - 1 <= xs.min() + left and xs.max() + left + 1 <= x2 + 1
        assert y1 - 1 <= ys.min() + top and ys.max() + top + 1 <= y2 + 1


def test_mosaic_fills_the_rest_and_keeps_the_first_photo_as_it_is() -> None:
    images, targets = zip(*(photo(*p) for p in PHOTOS), strict=True)
    canvas, target = mosaic(images, targets, fill=(1.0, 0.5, 0.25))
    assert torch.equal(canvas[:, :40, :80], images[0])
    assert torch.equal(target["boxes"][0], targets[0]["boxes"][0])
    # right of the bottom row (30 + 100 = 130 of 140 wide): the fill colour
    assert torch.equal(canvas[:, 40:, 130:], torch.tensor([1.0, 0.5, 0.25]).view(3, 1, 1).expand(3, 40, 10))


def test_mosaic_keeps_photos_without_digits_and_refuses_other_counts() -> None:
    images, targets = zip(*(photo(*p) for p in PHOTOS), strict=True)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 9}
    _, target = mosaic(images, [empty, *targets[1:]])
    assert target["boxes"].shape == (3, 4) and target["labels"].tolist() == [4, 6, 8]
    assert target["image_id"] == 9
    with pytest.raises(ValueError, match="4 images"):
        mosaic(images[:3], targets[:3])


def write_records(tmp_path: Path) -> list[ImageRecord]:
    records = []
    for i, (height, width, box, level) in enumerate(PHOTOS):
        image, _ = photo(height, width, box, level)
        path = tmp_path / f"{i}.png"
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
        digit = DigitBox(box_xyxy=tuple(float(v) for v in box), digit=i)  # type: ignore[arg-type]
        records.append(ImageRecord(image_id=i, path=path, width=width, height=height, boxes=(digit,)))
    return records


def test_dataset_without_mosaics_yields_the_photos_as_digit_dataset_does(tmp_path: Path) -> None:
    records = write_records(tmp_path)
    plain, never = DigitDataset(records), MosaicDataset(records, None, p=0.0)
    for i in range(len(records)):
        assert torch.equal(never[i][0], plain[i][0])
        assert torch.equal(never[i][1]["boxes"], plain[i][1]["boxes"])


def test_dataset_with_mosaics_yields_the_photo_top_left_and_three_others(tmp_path: Path) -> None:
    records = write_records(tmp_path)
    torch.manual_seed(0)
    always = MosaicDataset(records, None, p=1.0)
    for i in range(len(records)):
        image, target = always[i]
        height = records[i].height
        assert image.shape[-2] == 2 * height
        assert torch.allclose(image[:, :height, : records[i].width], DigitDataset(records)[i][0])
        assert len(target["labels"]) == 4 and target["labels"][0] == i + 1
        assert target["image_id"] == i


def test_dataset_applies_the_transforms_to_the_mosaic(tmp_path: Path) -> None:
    records = write_records(tmp_path)
    seen = []

    def record_shape(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        seen.append((tuple(image.shape), len(target["boxes"])))
        return image, target

    MosaicDataset(records, record_shape, p=1.0)[0]
    # once, on the mosaic: twice the first photo's height (40), a box from each of the four photos
    assert len(seen) == 1 and seen[0][0][1] == 80 and seen[0][1] == 4


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_a_probability_outside_0_1_is_refused(tmp_path: Path, p: float) -> None:
    with pytest.raises(ValueError, match="mosaic probability"):
        MosaicDataset(write_records(tmp_path), None, p=p)
    with pytest.raises(ValueError, match="mosaic_p"):
        AugmentConfig(mosaic_p=p)
