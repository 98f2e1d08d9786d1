import pytest
import torch

from training.transforms import AugmentConfig, TrainTransforms
from training.twins import DigitBeside, DigitChoice, number_gap, paste_digit, stroke_alpha

PLATE = torch.tensor([0.8, 0.8, 0.8])
INK = torch.tensor([0.1, 0.1, 0.5])


def plate_with_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A light grey plate 60 x 160 with two dark blue 'digits' 20 px high, 10 px wide, 5 px apart: a
    thin bar (the 1, label 2) then a bar with a foot (label 8). Boxes XYXY."""
    image = PLATE.view(3, 1, 1).repeat(1, 60, 160)
    boxes = torch.tensor([[40.0, 20.0, 50.0, 40.0], [55.0, 20.0, 65.0, 40.0]])
    image[:, 20:40, 44:47] = INK.view(3, 1, 1)
    image[:, 20:40, 58:61] = INK.view(3, 1, 1)
    image[:, 36:40, 58:65] = INK.view(3, 1, 1)
    return image, boxes, torch.tensor([2, 8])


def choice(**changes: object) -> DigitChoice:
    values: dict = dict(suffix=True, source=None, gap=1.0)
    return DigitChoice(**{**values, **changes})


def test_number_gap_is_the_median_spacing_or_a_share_of_a_lone_digit() -> None:
    _, boxes, _ = plate_with_digits()
    assert number_gap(boxes) == 5.0
    assert number_gap(boxes.flip(0)) == 5.0  # left to right, whatever the labels' order
    touching = torch.tensor([[0.0, 0, 10, 20], [8, 0, 18, 20], [22, 0, 30, 20], [42, 0, 50, 20]])
    assert number_gap(touching) == 4.0  # gaps 0 (an overlap, clamped), 4 and 12
    assert number_gap(touching[:3]) == 0.0  # gaps 0 and 4: the lower median
    assert number_gap(boxes[:1]) == pytest.approx(1.5)


def test_stroke_alpha_is_one_on_ink_zero_on_plate_and_zero_without_contrast() -> None:
    image, _, _ = plate_with_digits()
    alpha = stroke_alpha(image[:, 20:40, 55:65])
    assert alpha[:, 3:6].min() == 1.0 and alpha[:10, :3].max() == 0.0 and alpha[:10, 6:].max() == 0.0
    assert torch.equal(stroke_alpha(torch.full((3, 20, 10), 0.5)), torch.zeros(20, 10))


def test_suffix_copies_the_end_digit_after_the_number_with_its_box_and_label() -> None:
    image, boxes, labels = plate_with_digits()
    out = paste_digit(image, boxes, labels, choice())
    assert out is not None
    pasted, new_boxes, new_labels = out
    assert new_boxes[:2].equal(boxes) and new_labels.tolist() == [2, 8, 8]
    assert new_boxes[2].tolist() == [70.0, 20.0, 80.0, 40.0]  # the number's 5 px gap after x = 65
    copy, source = pasted[:, 20:40, 70:80], image[:, 20:40, 55:65]
    assert torch.allclose(copy, source)  # the same strokes on the same plate
    assert pasted[:, :, :70].equal(image[:, :, :70])  # nothing left of the copy moved
    assert pasted[:, :, 80:].equal(image[:, :, 80:])  # nor right of it


def test_prefix_copies_a_chosen_digit_before_the_number_at_the_drawn_gap() -> None:
    image, boxes, labels = plate_with_digits()
    out = paste_digit(image, boxes, labels, choice(suffix=False, source=1, gap=0.6))
    assert out is not None
    pasted, new_boxes, new_labels = out
    assert new_labels.tolist() == [2, 8, 8]  # the second digit left to right, though the first is beside it
    assert new_boxes[2].tolist() == [27.0, 20.0, 37.0, 40.0]  # 3 px (0.6 x 5) before x = 40
    assert torch.allclose(pasted[:, 20:40, 27:37], image[:, 20:40, 55:65])
    same = paste_digit(image, boxes, labels, choice(suffix=False))
    assert same is not None and same[2].tolist() == [2, 8, 2]  # the end digit: a like pair, "11"
    assert same[1][2].tolist() == [25.0, 20.0, 35.0, 40.0]
    assert torch.allclose(same[0][:, 20:40, 25:35], image[:, 20:40, 40:50])


def test_only_the_strokes_travel_onto_another_background() -> None:
    image, boxes, labels = plate_with_digits()
    image[:, :, 66:] = torch.tensor([0.6, 0.7, 0.6]).view(3, 1, 1)  # a greener plate beside the number
    out = paste_digit(image, boxes, labels, choice())
    assert out is not None
    region = out[0][:, 20:40, 70:80]
    assert torch.allclose(region[:, :10, :3], image[:, 20:30, 70:73])  # the plate there stays that plate
    assert torch.allclose(region[:, :, 3:6], INK.view(3, 1, 1).expand(3, 20, 3))  # the strokes arrive


@pytest.mark.parametrize(
    "changes",
    [
        {"gap": 20.0},  # past the image's right side
        {"suffix": False, "gap": 7.0},  # past its left side
    ],
)
def test_no_copy_where_it_does_not_fit(changes: dict) -> None:
    image, boxes, labels = plate_with_digits()
    assert paste_digit(image, boxes, labels, choice(**changes)) is None
    assert paste_digit(image, boxes, labels, choice()) is not None  # the same photo takes the default copy


def test_no_copy_taller_than_the_room_above_the_end_digits_bottom() -> None:
    image, _, labels = plate_with_digits()
    boxes = torch.tensor([[40.0, 2.0, 50.0, 40.0], [55.0, 10.0, 65.0, 30.0]])  # a tall first digit, 38 px
    assert paste_digit(image, boxes, labels, choice(source=0)) is None  # 38 px above y = 30 leaves the image
    out = paste_digit(image, boxes, labels, choice(source=1))
    assert out is not None and out[1][2].tolist() == [70.0, 10.0, 80.0, 30.0]


def test_no_copy_without_digits_or_of_a_box_with_no_whole_pixels() -> None:
    image, _, labels = plate_with_digits()
    assert paste_digit(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), choice()) is None
    thin = torch.tensor([[40.0, 20.0, 41.0, 40.0]])
    assert paste_digit(image, thin, labels[:1], choice()) is None


def test_train_transforms_copy_a_digit_only_when_configured_and_carry_its_box() -> None:
    image, boxes, labels = plate_with_digits()
    target = {"boxes": boxes, "labels": labels, "image_id": 3}
    off = dict(brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0, erasing_p=0)
    torch.manual_seed(0)
    copied, out_target = TrainTransforms(AugmentConfig(**off, digit_p=1.0))(image, target)
    assert len(out_target["boxes"]) == 3 and len(out_target["labels"]) == 3
    x1, y1, x2, y2 = out_target["boxes"][2].round().int().tolist()
    assert (x1 >= 65 or x2 <= 40) and (y1, y2) == (20, 40)  # beside the number, on its line
    assert not torch.equal(copied, image) and torch.equal(target["boxes"], boxes)  # the input untouched
    plain, plain_target = TrainTransforms(AugmentConfig(**off))(image, target)
    assert torch.equal(plain, image) and len(plain_target["boxes"]) == 2
    state = torch.get_rng_state()
    assert DigitBeside(0.0)(image, boxes, labels)[0] is image
    assert torch.equal(torch.get_rng_state(), state)  # off draws nothing: old recipes keep their draws


def test_digit_beside_draws_about_p_of_the_time_and_refuses_bad_settings() -> None:
    image, boxes, labels = plate_with_digits()
    torch.manual_seed(1)
    half = DigitBeside(0.5)
    copied = sum(len(half(image, boxes, labels)[1]) == 3 for _ in range(80))
    assert 20 < copied < 60
    with pytest.raises(ValueError, match="probability"):
        DigitBeside(1.5)
    with pytest.raises(ValueError, match="digit_p"):
        AugmentConfig(digit_p=-0.1)
