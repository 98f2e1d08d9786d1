"""The crop data set shared by backbone pretraining and the reader, its training degradations, and
learning from a teacher."""

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as nnf

from training.crops import (
    LABEL_SMOOTHING,
    CropParams,
    DigitCrops,
    degrade,
    distillation_loss,
    shrink_and_grow,
)
from training.data import load_coco_split


def test_crops_hold_the_labelled_digit(synth_dir: Path) -> None:
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    crops = DigitCrops(records, CropParams(size=32), train=False)
    assert len(crops) == sum(len(r.boxes) for r in records)
    image, digit = crops[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert digit == records[0].boxes[0].digit
    # Evaluation crops are deterministic; training crops are jittered.
    assert torch.equal(crops[0][0], image)
    jittered = DigitCrops(records, CropParams(size=32), train=True)
    assert any(not torch.equal(jittered[0][0], image) for _ in range(5))


def test_preloaded_images_give_the_same_crops(synth_dir: Path) -> None:
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    plain = DigitCrops(records, CropParams(size=24), train=False)
    loaded = DigitCrops(records, CropParams(size=24), train=False, preload=True)
    assert len(loaded.images) == len({r.path for r in records if r.boxes}) > 0 and not plain.images
    for index in (0, len(plain) - 1):
        assert torch.equal(plain[index][0], loaded[index][0]) and plain[index][1] == loaded[index][1]


def checkerboard(size: int) -> torch.Tensor:
    """FloatTensor[3, size, size]: 1 px black and white squares, all detail and no shape."""
    index = torch.arange(size)
    return ((index[:, None] + index[None, :]) % 2).float().expand(3, size, size).clone()


def test_shrink_and_grow_keeps_the_size_and_loses_the_detail() -> None:
    board = checkerboard(32)
    assert shrink_and_grow(board, 32) is board and shrink_and_grow(board, 40) is board
    blurred = shrink_and_grow(board, 12)
    assert blurred.shape == board.shape and float(blurred.min()) >= 0.0 and float(blurred.max()) <= 1.0
    # The mean survives; the 1 px pattern does not.
    assert float(blurred.mean()) == pytest.approx(float(board.mean()), abs=0.02)
    assert float(blurred.std()) < 0.2 * float(board.std())
    # A flat crop stays flat.
    flat = torch.full((3, 32, 32), 0.4)
    assert torch.allclose(shrink_and_grow(flat, 9), flat, atol=1e-5)


def test_degrade_is_off_by_default_and_each_part_changes_the_crop() -> None:
    crop = torch.rand(3, 32, 32)
    assert degrade(crop, CropParams(size=32), random.Random(0)) is crop
    rotated = degrade(crop, CropParams(size=32, rotate=10.0), random.Random(0))
    low = degrade(crop, CropParams(size=32, low_res=1.0, low_res_min=0.3), random.Random(0))
    erased = degrade(crop, CropParams(size=32, erase=1.0), random.Random(0))
    for out in (rotated, low, erased):
        assert out.shape == crop.shape and not torch.equal(out, crop)
    assert float(low.std()) < float(crop.std())  # noise loses contrast when blurred
    # Erasing blanks one rectangle of 2-10 % of the crop to a single value, and touches nothing else.
    changed = (erased != crop).any(0)
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    box = erased[:, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    assert 0.015 * 32 * 32 <= box[0].numel() <= 0.11 * 32 * 32 and torch.all(box == box.flatten()[0])
    assert torch.equal(crop, torch.where(changed, crop, erased))
    # The same draws give the same crop.
    both = CropParams(size=32, rotate=5.0, low_res=0.5, erase=0.5)
    assert torch.equal(degrade(crop, both, random.Random(3)), degrade(crop, both, random.Random(3)))


@pytest.mark.parametrize(
    "settings", [{"low_res": 1.5}, {"erase": -0.1}, {"low_res_min": 0.0}, {"rotate": -1.0}]
)
def test_crop_params_refuse_bad_degradations(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CropParams(**settings)


def test_degradations_touch_training_crops_only(synth_dir: Path) -> None:
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    strong = CropParams(size=32, low_res=1.0, rotate=8.0, erase=1.0)
    plain = DigitCrops(records, CropParams(size=32), train=False)
    assert torch.equal(DigitCrops(records, strong, train=False)[0][0], plain[0][0])
    random.seed(0)
    crop, digit = DigitCrops(records, strong, train=True)[0]
    assert crop.shape == (3, 32, 32) and digit == plain[0][1]


def test_distillation_without_weight_is_the_labels_cross_entropy() -> None:
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    labels = torch.tensor([0, 1, 2, 3, 4, 9])
    expected = nnf.cross_entropy(student, labels, label_smoothing=LABEL_SMOOTHING)
    assert torch.allclose(distillation_loss(student, teacher, labels, 0.0, 4.0), expected)


def test_distillation_adds_nothing_where_the_student_agrees_with_its_teacher() -> None:
    logits, labels = torch.randn(5, 10), torch.tensor([3, 1, 4, 1, 5])
    hard = nnf.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)
    assert torch.allclose(distillation_loss(logits, logits.clone(), labels, 0.75, 3.0), 0.25 * hard)
    # The soft part alone (weight 1): zero at agreement, growing with disagreement.
    teacher = torch.zeros(1, 10)
    teacher[0, 7] = 5.0
    near, far = teacher * 0.8, torch.roll(teacher, 1, dims=1)
    agree = distillation_loss(teacher, teacher, torch.tensor([7]), 1.0, 2.0)
    assert float(agree) == pytest.approx(0.0, abs=1e-6)
    assert (
        0
        < float(distillation_loss(near, teacher, torch.tensor([7]), 1.0, 2.0))
        < float(distillation_loss(far, teacher, torch.tensor([7]), 1.0, 2.0))
    )


def test_distillation_soft_part_is_temperature_squared_kl() -> None:
    student, teacher = torch.randn(4, 10), torch.randn(4, 10)
    t = 2.5
    p, q = torch.softmax(teacher / t, 1), torch.softmax(student / t, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    got = distillation_loss(student, teacher, torch.zeros(4, dtype=torch.long), 1.0, t)
    assert torch.allclose(got, t**2 * kl, atol=1e-5)


@pytest.mark.parametrize("weight, temperature", [(-0.1, 4.0), (1.5, 4.0), (0.5, 0.0)])
def test_distillation_refuses_bad_settings(weight: float, temperature: float) -> None:
    logits = torch.randn(2, 10)
    with pytest.raises(ValueError, match="distillation weight"):
        distillation_loss(logits, logits, torch.tensor([0, 1]), weight, temperature)


def test_distillation_refuses_teachers_of_other_classes() -> None:
    with pytest.raises(ValueError, match="teacher logits"):
        distillation_loss(torch.randn(2, 10), torch.randn(2, 11), torch.tensor([0, 1]), 0.5, 4.0)
