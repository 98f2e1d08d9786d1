"""training.street: the street lessons drawn for training photos (shadow, view, smear), the boxes moved
with the view only."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import augment_only as only
from training.street import StreetView, from_pil, to_pil, view_boxes
from training.transforms import AugmentConfig, TrainTransforms
from training.viewpoint import view_box


def plate() -> tuple[torch.Tensor, torch.Tensor]:
    """A 48 x 120 grey plate (0.5) with two white digits, 12 x 24 px at x 30-42 and 70-82, y 12-36:
    float [3, 48, 120] and their boxes float [2, 4] xyxy."""
    image = torch.full((3, 48, 120), 0.5)
    image[:, 12:36, 30:42] = 1.0
    image[:, 12:36, 70:82] = 1.0
    return image, torch.tensor([[30.0, 12.0, 42.0, 36.0], [70.0, 12.0, 82.0, 36.0]])


def bright_inside(image: torch.Tensor, box: list[float]) -> tuple[int, int]:
    """(how many pixels of `image` [3, H, W] brighter than 0.9 have their centres inside `box` (xyxy px)
    grown by 1.5 px, how many there are in all)."""
    ys, xs = torch.nonzero(image[0] > 0.9, as_tuple=True)
    x1, y1, x2, y2 = box
    inside = (xs + 0.5 >= x1 - 1.5) & (xs + 0.5 <= x2 + 1.5) & (ys + 0.5 >= y1 - 1.5) & (ys + 0.5 <= y2 + 1.5)
    return int(inside.sum()), len(xs)


def test_pil_round_trip_keeps_the_pixels_to_a_grey_level() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 10, 14)
    photo = to_pil(image)
    assert photo.size == (14, 10) and photo.mode == "RGB"
    back = from_pil(photo)
    assert back.shape == image.shape and back.dtype == torch.float32
    assert (back - image).abs().max() <= 0.5 / 255 + 1e-6


def test_view_boxes_are_view_box_for_each_box_and_keep_an_empty_list_empty() -> None:
    _, boxes = plate()
    moved = view_boxes(boxes, (120, 48), 40.0, 0.0)
    assert moved.shape == (2, 4) and moved.dtype == torch.float32
    for box, expected in zip(boxes.tolist(), moved.tolist(), strict=True):
        assert expected == pytest.approx(view_box(tuple(box), (120, 48), 40.0, 0.0), abs=1e-4)
    assert view_boxes(torch.zeros(0, 4), (120, 48), 0.0, 30.0).shape == (0, 4)


def test_off_in_the_seed_so_its_random_numbers_stay_as_they_were() -> None:
    assert not StreetView(AugmentConfig()).on
    assert TrainTransforms(only()).street is None
    image, boxes = plate()
    state = torch.get_rng_state()
    out, out_boxes = StreetView(only(view_p=0.0, shadow_p=0.0, smear_p=0.0))(image, boxes)
    assert out is image and out_boxes is boxes and torch.equal(torch.get_rng_state(), state)


def test_a_view_moves_each_box_onto_its_turned_digit() -> None:
    torch.manual_seed(1)
    street = StreetView(only(view_p=1.0, view_degrees=70))
    image, boxes = plate()
    sizes = set()
    for _ in range(12):
        seen, moved = street(image, boxes)
        sizes.add(tuple(seen.shape))
        assert seen.shape[0] == 3 and moved.shape == (2, 4)
        assert moved[0, 2] < moved[1, 0]  # still left to right, apart
        total = 0
        for box in moved.tolist():
            inside, everything = bright_inside(seen, box)
            total += inside
        # every bright pixel of the turned photo lies in one of the two moved boxes
        assert total == everything > 0
        # and each box is no looser than the turned digit's bright pixels by more than 2 px a side
        for box in moved.tolist():
            x1, y1, x2, y2 = (round(v) for v in box)
            near = seen[0, max(0, y1 - 2) : y2 + 2, max(0, x1 - 2) : x2 + 2] > 0.9
            ys, xs = torch.nonzero(near, as_tuple=True)
            assert len(xs)
            assert xs.max() - xs.min() + 1 >= (x2 - x1) - 4
            assert ys.max() - ys.min() + 1 >= (y2 - y1) - 4
    assert len(sizes) > 1  # the turned photo's size follows the turn


def test_a_shadow_and_a_smear_change_the_pixels_not_the_boxes() -> None:
    torch.manual_seed(2)
    image, boxes = plate()
    for way in ({"shadow_p": 1.0}, {"smear_p": 1.0}):
        out, out_boxes = StreetView(only(**way))(image, boxes)
        assert out.shape == image.shape and not torch.equal(out, image), way
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert torch.equal(out_boxes, boxes)


def test_a_shadow_darkens_one_side_only() -> None:
    torch.manual_seed(3)
    image, boxes = plate()
    street = StreetView(only(shadow_p=1.0, shadow_stops=(2.0, 2.0)))
    for _ in range(8):
        out, _ = street(image, boxes)
        darker = (out < image - 0.05).all(dim=0)
        assert darker.any() and (out >= image - 1e-6).all(dim=0).any()  # a dark part and a lit one
        # the edge is never steeper than 0.3 of the width over the height: the side left dark keeps its
        # edge column dark at least in part, the other side's column wholly lit, or the reverse
        left, right = float(darker[:, 0].float().mean()), float(darker[:, -1].float().mean())
        assert left != right and (0.0 in (left, right) or 1.0 in (left, right))


def test_a_smear_runs_along_the_rows_only() -> None:
    torch.manual_seed(4)
    street = StreetView(only(smear_p=1.0, smear_px=(5, 5)))
    rows = torch.linspace(0.0, 1.0, 20).reshape(1, 20, 1).expand(3, 20, 30).contiguous()
    smeared, _ = street(rows, torch.zeros(0, 4))
    assert torch.allclose(smeared, rows, atol=0.5 / 255 + 1e-6)  # nothing to smear along a row
    columns = rows.transpose(1, 2).contiguous()
    smeared, _ = street(columns, torch.zeros(0, 4))
    assert not torch.allclose(smeared, columns, atol=2 / 255)


@pytest.mark.parametrize("way", ["shadow_p", "view_p", "smear_p"])
def test_each_way_changes_about_its_share_of_photos(way: str) -> None:
    torch.manual_seed(5)
    street = StreetView(only(**{way: 0.3}))
    image, boxes = plate()
    changed = sum(street(image, boxes)[0] is not image for _ in range(300))
    assert 60 <= changed <= 120  # 90 expected; binomial sd ~8


def test_train_transforms_carry_the_moved_boxes_and_the_labels() -> None:
    torch.manual_seed(6)
    image, boxes = plate()
    target = {"boxes": boxes, "labels": torch.tensor([3, 8]), "image_id": 9}
    out, out_target = TrainTransforms(only(view_p=1.0, view_degrees=50))(image, target)
    assert out_target["labels"].tolist() == [3, 8] and out_target["image_id"] == 9
    assert out_target["boxes"].shape == (2, 4) and not torch.equal(out_target["boxes"], boxes)
    inside = sum(bright_inside(out, box)[0] for box in out_target["boxes"].tolist())
    assert inside == bright_inside(out, [0, 0, 1, 1])[1]


@pytest.mark.parametrize(
    "bad",
    [
        {"shadow_p": 1.5},
        {"view_p": -0.1},
        {"smear_p": 2.0},
        {"shadow_stops": (0.0, 1.0)},
        {"shadow_stops": (2.0, 1.0)},
        {"view_degrees": 0.0},
        {"view_degrees": 80.0},
        {"smear_px": (1, 3)},
        {"smear_px": (5, 4)},
        {"smear_px": (2.5, 4)},
    ],
)
def test_augment_config_rejects_bad_street_values(bad: dict) -> None:
    with pytest.raises(ValueError, match="augment"):
        AugmentConfig(**bad)
