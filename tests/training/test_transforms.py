import pytest
import torch

from tests.helpers import augment_only as only
from training.transforms import (
    AugmentConfig,
    PoorPhoto,
    TrainTransforms,
    add_grain,
    erased_share,
    jpeg_roundtrip,
    low_resolution,
)


def white_square() -> tuple[torch.Tensor, dict]:
    image = torch.zeros(3, 60, 120)
    image[:, 20:40, 50:60] = 1.0
    return image, {
        "boxes": torch.tensor([[50.0, 20.0, 60.0, 40.0]]),
        "labels": torch.tensor([5]),
        "image_id": 7,
    }


def assert_box_holds_the_bright_pixels(image: torch.Tensor, box: torch.Tensor) -> None:
    """`box` (XYXY, pixels) holds every pixel of `image` [3, H, W] brighter than 0.9, within 1.5 px."""
    ys, xs = torch.nonzero(image[0] > 0.9, as_tuple=True)
    x1, y1, x2, y2 = box.tolist()
    assert x1 - 1.5 <= xs.min() and xs.max() + 1 <= x2 + 1.5
    assert y1 - 1.5 <= ys.min() and ys.max() + 1 <= y2 + 1.5


def test_affine_moves_boxes_with_the_pixels() -> None:
    torch.manual_seed(0)
    transform = TrainTransforms(only(affine_degrees=10, affine_translate=0.1))
    for _ in range(10):
        image, target = transform(*white_square())
        assert_box_holds_the_bright_pixels(image, target["boxes"][0])
        assert target["labels"].tolist() == [5] and target["image_id"] == 7


def test_seed_transforms_keep_range_and_never_normalise() -> None:
    torch.manual_seed(1)
    transform = TrainTransforms()
    for _ in range(10):
        image, target = transform(*white_square())
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert target["boxes"].shape == (len(target["labels"]), 4)


def test_erasing_fills_with_imagenet_mean() -> None:
    torch.manual_seed(2)
    transform = TrainTransforms(
        AugmentConfig(
            brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0, erasing_p=1.0
        )
    )
    image, _ = transform(torch.ones(3, 60, 120) * 0.0, white_square()[1])
    erased = image[0] != 0
    assert erased.any()
    assert torch.allclose(image[0][erased], torch.tensor(0.485))


def test_box_pushed_out_of_image_is_dropped_with_its_label() -> None:
    transform = TrainTransforms(
        AugmentConfig(
            brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0.5, erasing_p=0
        )
    )
    torch.manual_seed(0)
    dropped = 0
    for _ in range(30):
        image = torch.zeros(3, 60, 120)
        _, target = transform(
            image, {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1])}
        )
        assert len(target["boxes"]) == len(target["labels"])
        dropped += len(target["labels"]) == 0
    assert dropped > 0


def test_erased_share_counts_the_changed_pixels_in_each_box() -> None:
    changed = torch.zeros(3, 40, 80, dtype=torch.bool)
    changed[:, 10:20, 10:30] = True
    boxes = torch.tensor(
        [
            [10.0, 10.0, 30.0, 20.0],  # exactly the erased rectangle
            [20.0, 10.0, 40.0, 20.0],  # half in it
            [50.0, 0.0, 60.0, 40.0],  # beside it
            [100.0, 0.0, 110.0, 10.0],  # outside the image
            [12.2, 12.2, 12.7, 12.7],  # under one pixel, inside it
        ]
    )
    shares = erased_share(changed, boxes)
    assert torch.allclose(shares, torch.tensor([1.0, 0.5, 0.0, 0.0, 1.0]))
    assert torch.allclose(erased_share(changed[0], boxes), shares)


def test_erasing_drop_removes_the_digits_it_hides_and_keeps_the_rest() -> None:
    dropping = TrainTransforms(only(erasing_p=1.0, erasing_drop=0.5))
    keeping = TrainTransforms(only(erasing_p=1.0))
    dropped = 0
    for seed in range(60):
        image, target = white_square()
        torch.manual_seed(seed)
        out, kept = dropping(image, target)
        torch.manual_seed(seed)
        same, all_boxes = keeping(image, target)
        assert torch.equal(out, same)  # the same erasing, only the labels differ
        assert all_boxes["labels"].tolist() == [5]
        share = erased_share(image != out, target["boxes"])[0].item()
        assert (kept["labels"].tolist() == []) == (share >= 0.5)
        assert len(kept["boxes"]) == len(kept["labels"])
        dropped += len(kept["labels"]) == 0
    assert 0 < dropped < 60


def test_blur_and_grey_change_the_pixels_not_the_boxes() -> None:
    torch.manual_seed(3)
    image = torch.rand(3, 60, 120)
    _, target = white_square()
    grey, grey_target = TrainTransforms(only(grayscale_p=1.0))(image, target)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert torch.equal(grey_target["boxes"], target["boxes"])
    blurred, blur_target = TrainTransforms(only(blur_p=1.0))(image, target)
    assert blurred.shape == image.shape and blurred.std() < image.std() * 0.8
    assert torch.equal(blur_target["boxes"], target["boxes"])
    untouched, _ = TrainTransforms(only())(image, target)
    assert torch.equal(untouched, image)


def test_invert_flips_the_pixels_not_the_boxes_and_only_when_drawn() -> None:
    torch.manual_seed(6)
    image, target = white_square()
    inverted, inv_target = TrainTransforms(only(invert_p=1.0))(image, target)
    assert torch.allclose(inverted, 1.0 - image)
    assert torch.equal(inv_target["boxes"], target["boxes"]) and inv_target["labels"].tolist() == [5]
    half = TrainTransforms(only(invert_p=0.5))
    flipped = sum(not torch.equal(half(image, target)[0], image) for _ in range(60))
    assert 15 < flipped < 45  # about half, not all or none
    untouched, _ = TrainTransforms(only())(image, target)
    assert torch.equal(untouched, image)


def test_stretch_resizes_the_width_only_and_moves_the_boxes_with_the_pixels() -> None:
    torch.manual_seed(4)
    transform = TrainTransforms(only(stretch=1.5))
    widths = []
    for _ in range(40):
        image, target = transform(*white_square())
        height, width = image.shape[-2:]
        factor = width / 120
        assert height == 60 and 1 / 1.5 - 0.01 <= factor <= 1.5 + 0.01
        x1, y1, x2, y2 = target["boxes"][0].tolist()
        assert (x1, x2) == (pytest.approx(50 * factor, abs=0.5), pytest.approx(60 * factor, abs=0.5))
        assert (y1, y2) == (20.0, 40.0)
        xs = torch.nonzero(image[0, 30] > 0.5).flatten()
        assert x1 - 1.5 <= xs.min() and xs.max() + 1 <= x2 + 1.5
        widths.append(width)
    assert min(widths) < 100 and max(widths) > 140  # both ways, across the range
    unchanged, _ = TrainTransforms(only())(*white_square())
    assert unchanged.shape[-1] == 120


def test_shear_slants_the_digit_and_its_box_holds_the_slanted_pixels() -> None:
    torch.manual_seed(5)
    transform = TrainTransforms(only(affine_shear=20))
    slants = []
    for _ in range(30):
        image, target = transform(*white_square())
        assert image.shape == (3, 60, 120) and target["labels"].tolist() == [5]
        assert_box_holds_the_bright_pixels(image, target["boxes"][0])
        ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
        x1, _, x2, _ = target["boxes"][0].tolist()
        # The box around the slanted corners is as wide as the bar plus its slant over its height.
        top = xs[ys == ys.min()].float().mean()
        bottom = xs[ys == ys.max()].float().mean()
        slants.append(float(bottom - top))
        assert x2 - x1 == pytest.approx(10 + abs(slants[-1]) * 20 / 19, abs=2.0)
    assert min(slants) < -2 and max(slants) > 2  # both ways
    upright, target = TrainTransforms(only())(*white_square())
    assert torch.equal(upright, white_square()[0])  # off: nothing slants
    assert torch.equal(target["boxes"], torch.tensor([[50.0, 20.0, 60.0, 40.0]]))


@pytest.mark.parametrize(
    "bad",
    [
        {"blur_p": 1.5},
        {"grayscale_p": -0.1},
        {"erasing_drop": 2.0},
        {"blur_sigma": (1.0, 0.5)},
        {"stretch": 0.8},
        {"affine_shear": -5.0},
        {"affine_shear": 50.0},
        {"invert_p": 1.2},
        {"affine_boxes": "rectangle"},
        {"lowres_p": 1.1},
        {"lowres_min": 0.0},
        {"noise_sigma": (10.0, 5.0)},
        {"jpeg_quality": (0, 50)},
        {"jpeg_quality": (60, 40)},
        {"jpeg_quality": (50, 100)},
    ],
)
def test_augment_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError, match="augment"):
        AugmentConfig(**bad)


def white_ellipse() -> tuple[torch.Tensor, dict]:
    """A filled white ellipse inscribed in the box (40, 10)-(60, 50): 20 px wide, 40 px tall."""
    image = torch.zeros(3, 60, 120)
    ys, xs = torch.meshgrid(torch.arange(60) + 0.5, torch.arange(120) + 0.5, indexing="ij")
    image[:, ((xs - 50) / 10) ** 2 + ((ys - 30) / 20) ** 2 <= 1] = 1.0
    return image, {
        "boxes": torch.tensor([[40.0, 10.0, 60.0, 50.0]]),
        "labels": torch.tensor([3]),
        "image_id": 1,
    }


def bright_box(image: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_ellipse_boxes_fit_a_rotated_ellipse_where_corner_boxes_grow_wider() -> None:
    corners = TrainTransforms(only(affine_degrees=20))
    ellipse = TrainTransforms(only(affine_degrees=20, affine_boxes="ellipse"))
    widened = []
    for seed in range(12):
        torch.manual_seed(seed)
        image_c, target_c = corners(*white_ellipse())
        torch.manual_seed(seed)
        image_e, target_e = ellipse(*white_ellipse())
        assert torch.equal(image_c, image_e)  # the same random draws, the same pixels
        assert target_e["labels"].tolist() == [3]
        # The ellipse's box is the box of the warped ellipse's pixels, within a pixel and a half.
        assert target_e["boxes"][0].tolist() == pytest.approx(bright_box(image_e), abs=1.5)
        width_c = float(target_c["boxes"][0, 2] - target_c["boxes"][0, 0])
        width_e = float(target_e["boxes"][0, 2] - target_e["boxes"][0, 0])
        assert width_e <= width_c + 1e-4
        widened.append(width_c - width_e)
    # At 20 degrees the corners' box is 20 cos a + 40 sin a wide (32 px), the ellipse's 23 px.
    assert max(widened) > 5


def test_ellipse_boxes_are_the_boxes_themselves_when_nothing_warps() -> None:
    image, target = TrainTransforms(only(affine_boxes="ellipse", stretch=1.5))(*white_square())
    x1, y1, x2, y2 = target["boxes"][0].tolist()
    assert (y1, y2) == pytest.approx((20.0, 40.0), abs=1e-4)
    assert x2 - x1 == pytest.approx(10.0 * image.shape[-1] / 120, abs=0.2)  # stretched with the pixels
    assert bright_box(image)[0] == pytest.approx(x1, abs=1.0)


def test_ellipse_boxes_drop_a_box_pushed_out_of_the_image_with_its_label() -> None:
    image, target = white_square()
    target = {
        **target,
        "boxes": torch.tensor([[50.0, 20.0, 60.0, 40.0], [118.0, 0.0, 140.0, 10.0]]),
        "labels": torch.tensor([5, 2]),
    }
    torch.manual_seed(0)
    _, out = TrainTransforms(only(affine_boxes="ellipse"))(image, target)
    assert out["labels"].tolist() == [5, 2]
    assert out["boxes"][1].tolist() == pytest.approx([118.0, 0.0, 120.0, 10.0])  # clamped to the image
    _, gone = TrainTransforms(only(affine_boxes="ellipse"))(
        image, {**target, "boxes": torch.tensor([[50.0, 20.0, 60.0, 40.0], [120.0, 0.0, 140.0, 10.0]])}
    )
    assert gone["labels"].tolist() == [5] and gone["boxes"].shape == (1, 4)


def test_mean_boxes_lie_halfway_between_the_corners_and_the_ellipse() -> None:
    rules = {
        rule: TrainTransforms(only(affine_degrees=20, affine_boxes=rule))
        for rule in ("corners", "ellipse", "mean")
    }
    for seed in range(6):
        boxes = {}
        for rule, transform in rules.items():
            torch.manual_seed(seed)
            boxes[rule] = transform(*white_ellipse())[1]["boxes"][0]
        assert torch.allclose(boxes["mean"], (boxes["corners"] + boxes["ellipse"]) / 2, atol=1e-4)


def checkerboard(height: int = 64, width: int = 96) -> torch.Tensor:
    """Float [3, H, W]: 1-pixel black and white squares, all detail and no area."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((ys + xs) % 2).float().expand(3, height, width).clone()


def test_low_resolution_keeps_the_size_and_loses_the_detail() -> None:
    image = checkerboard()
    coarse = low_resolution(image, 0.5)
    assert coarse.shape == image.shape
    assert coarse.std() < 0.1 * image.std()  # 1-px squares do not survive half the pixels
    assert torch.equal(low_resolution(image, 1.0), image)
    smooth = torch.linspace(0, 1, 96).expand(3, 64, 96).clone()  # a ramp has no detail to lose
    assert (low_resolution(smooth, 0.5) - smooth).abs().max() < 0.02
    with pytest.raises(ValueError, match="factor"):
        low_resolution(image, 0.0)


def test_add_grain_has_the_asked_spread_in_grey_levels() -> None:
    torch.manual_seed(10)
    grey = torch.full((3, 100, 100), 0.5)
    grainy = add_grain(grey, 12.0)
    assert abs(float((grainy - grey).std()) * 255 - 12.0) < 0.5
    assert torch.equal(add_grain(grey, 0.0), grey)
    assert add_grain(torch.ones(3, 8, 8), 50.0).max() <= 1.0


def test_jpeg_roundtrip_loses_more_at_lower_quality() -> None:
    torch.manual_seed(11)
    image = torch.rand(3, 48, 64)
    fine, coarse = jpeg_roundtrip(image, 95), jpeg_roundtrip(image, 10)
    assert fine.shape == coarse.shape == image.shape and fine.dtype == torch.float32
    assert 0 < (fine - image).abs().mean() < (coarse - image).abs().mean()


def test_poor_photo_off_draws_nothing_and_on_changes_pixels_not_boxes() -> None:
    assert not PoorPhoto(AugmentConfig()).on  # the seed recipe: off, its random numbers as before
    assert TrainTransforms(only()).poor is None
    torch.manual_seed(12)
    image, target = white_square()
    for ways in ({"lowres_p": 1.0, "lowres_min": 0.3}, {"noise_p": 1.0}, {"jpeg_p": 1.0}):
        poor, poor_target = TrainTransforms(only(**ways))(image, target)
        assert poor.shape == image.shape and not torch.equal(poor, image), ways
        assert poor.min() >= 0.0 and poor.max() <= 1.0
        assert torch.equal(poor_target["boxes"], target["boxes"]) and poor_target["labels"].tolist() == [5]
    assert torch.equal(PoorPhoto(only(noise_p=0.0, jpeg_p=0.0))(image), image)


@pytest.mark.parametrize("way", ["lowres_p", "noise_p", "jpeg_p"])
def test_poor_photo_changes_about_its_share_of_photos(way: str) -> None:
    torch.manual_seed(13)
    poor = PoorPhoto(only(**{way: 0.3}))
    image = checkerboard(24, 32)
    changed = sum(not torch.equal(poor(image), image) for _ in range(300))
    assert 60 <= changed <= 120  # 90 expected; binomial sd ~8
