import pytest
import torch

from training.marks import (
    MarkBeside,
    MarkChoice,
    digit_ink,
    glyph_mask,
    mark_fonts,
    paste_mark,
    plate_and_ink,
)
from training.transforms import AugmentConfig, TrainTransforms

FONT = mark_fonts()[0]


def plate_with_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """A light grey plate (0.8) 60 x 160 with two dark blue 'digits' (bars) 20 px high: boxes XYXY."""
    image = torch.full((3, 60, 160), 0.8)
    boxes = torch.tensor([[40.0, 20.0, 50.0, 40.0], [55.0, 20.0, 65.0, 40.0]])
    for x1, y1, x2, y2 in boxes.int().tolist():
        image[:, y1:y2, x1 + 3 : x2 - 3] = torch.tensor([0.1, 0.1, 0.5]).view(3, 1, 1)
    return image, boxes


def choice(**changes: object) -> MarkChoice:
    values: dict = dict(text="A", font_path=FONT, suffix=True, height=1.0, gap=0.5, blur=0.0)
    return MarkChoice(**{**values, **changes})


def changed_box(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    """XYXY (pixels, exclusive ends) around every pixel that differs."""
    ys, xs = torch.nonzero((before - after).abs().sum(0) > 1e-4, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_digit_ink_is_the_strokes_colour_not_the_plate() -> None:
    image, boxes = plate_with_digits()
    assert torch.allclose(digit_ink(image, boxes[1]), torch.tensor([0.1, 0.1, 0.5]), atol=1e-6)
    plate, ink = plate_and_ink(image, boxes[1])
    assert torch.allclose(plate, torch.full((3,), 0.8)) and torch.equal(ink, digit_ink(image, boxes[1]))


def test_glyph_mask_is_cropped_to_its_ink_at_the_drawing_size() -> None:
    a, bis = glyph_mask("A", FONT), glyph_mask("BIS", FONT)
    assert 0.5 * 64 < a.shape[0] <= 64 and a.max() == 1.0 and a.min() == 0.0
    assert a[0].max() > 0 and a[-1].max() > 0 and a[:, 0].max() > 0 and a[:, -1].max() > 0
    assert bis.shape[1] > 2 * a.shape[1]


def test_suffix_stands_after_the_last_digit_on_its_bottom_line_in_its_ink() -> None:
    image, boxes = plate_with_digits()
    out = paste_mark(image, boxes, choice())
    assert out is not None and out.shape == image.shape
    x1, y1, x2, y2 = changed_box(image, out)
    # gap 0.5 x the digit's width (10 px) after x = 65; as tall as the digits (20 px) on their bottom line
    assert x1 >= 69 and x1 <= 72 and y2 == 40 and 18 <= y2 - y1 <= 20
    assert torch.equal(out[:, :, :66], image[:, :, :66])  # the digits and all left of the mark as they were
    darkest = out[:, y1:y2, x1:x2].sum(0).argmin()
    ink = out[:, y1:y2, x1:x2].reshape(3, -1)[:, darkest]
    assert torch.allclose(ink, torch.tensor([0.1, 0.1, 0.5]), atol=0.02)


def test_prefix_stands_before_the_first_digit_and_blur_softens_it() -> None:
    image, boxes = plate_with_digits()
    sharp = paste_mark(image, boxes, choice(text="N°", suffix=False, height=0.8))
    blurred = paste_mark(image, boxes, choice(text="N°", suffix=False, height=0.8, blur=0.1))
    assert sharp is not None and blurred is not None
    x1, y1, x2, y2 = changed_box(image, sharp)
    assert x2 <= 35 and y2 == 40 and 14 <= y2 - y1 <= 16
    assert torch.equal(sharp[:, :, 40:], image[:, :, 40:])
    # blurred within the mark's own box: softer strokes (fewer pixels at full ink), nothing outside it
    assert torch.equal(blurred[:, :, x2:], image[:, :, x2:]) and torch.equal(blurred[:, :y1], image[:, :y1])
    near_ink = [
        int(((m[:, y1:y2, x1:x2] - image[:, y1:y2, x1:x2]).abs().sum(0) > 1.5).sum())
        for m in (sharp, blurred)
    ]
    assert near_ink[1] < 0.8 * near_ink[0]


@pytest.mark.parametrize(
    ("changes", "crop_top"),
    [
        ({"gap": 12.0}, 0),  # past the image's right side
        ({"suffix": False, "gap": 5.0}, 0),  # past its left side
        ({"height": 1.5}, 15),  # taller than the room above the digits' bottom line
    ],
)
def test_no_mark_where_it_does_not_fit(changes: dict, crop_top: int) -> None:
    image, boxes = plate_with_digits()
    image, boxes = image[:, crop_top:, :], boxes - torch.tensor([0.0, crop_top, 0.0, crop_top])
    assert paste_mark(image, boxes, choice(**changes)) is None
    assert paste_mark(image, boxes, choice()) is not None  # the same photo takes the default mark


def test_no_mark_without_digits_and_none_for_a_glyph_the_font_lacks() -> None:
    image, boxes = plate_with_digits()
    assert paste_mark(image, torch.zeros(0, 4), choice()) is None
    assert paste_mark(image, boxes, choice(text=" ")) is None


def test_train_transforms_paste_marks_only_when_configured_and_keep_the_boxes() -> None:
    image, boxes = plate_with_digits()
    target = {"boxes": boxes, "labels": torch.tensor([1, 2]), "image_id": 3}
    off = dict(brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0, erasing_p=0)
    torch.manual_seed(0)
    marked, out_target = TrainTransforms(AugmentConfig(**off, mark_p=1.0))(image, target)
    assert not torch.equal(marked, image)
    assert torch.equal(out_target["boxes"], boxes) and out_target["labels"].tolist() == [1, 2]
    x1, _, x2, _ = changed_box(image, marked)
    assert x1 >= 65 or x2 <= 40  # beside the number, never on it
    plain, _ = TrainTransforms(AugmentConfig(**off))(image, target)
    assert torch.equal(plain, image)
    state = torch.get_rng_state()
    assert MarkBeside(0.0, mark_fonts())(image, boxes) is image
    assert torch.equal(torch.get_rng_state(), state)  # off draws nothing: old recipes keep their draws


def test_mark_beside_draws_about_p_of_the_time_and_refuses_bad_settings() -> None:
    image, boxes = plate_with_digits()
    torch.manual_seed(1)
    half = MarkBeside(0.5, mark_fonts())
    marked = sum(not torch.equal(half(image, boxes), image) for _ in range(80))
    assert 20 < marked < 60
    with pytest.raises(ValueError, match="probability"):
        MarkBeside(1.5, mark_fonts())
    with pytest.raises(ValueError, match="font"):
        MarkBeside(0.5, ())
    with pytest.raises(ValueError, match="mark_p"):
        AugmentConfig(mark_p=-0.1)


def test_mark_fonts_keep_only_fonts_that_draw_every_mark() -> None:
    dejavu = [name.rsplit("/", 1)[-1] for name in mark_fonts()]
    assert "DejaVuSans.ttf" in dejavu and not any("Display" in name for name in dejavu)
    stix = [name.rsplit("/", 1)[-1] for name in mark_fonts("STIX")]
    assert stix and all(name.startswith("STIXGeneral") for name in stix)  # no symbol fonts
    with pytest.raises(ValueError, match="NoSuchFont"):
        mark_fonts("NoSuchFont")
