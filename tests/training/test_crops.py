"""The crop data set shared by backbone pretraining and the reader."""

from pathlib import Path

import torch

from training.crops import CropParams, DigitCrops
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
