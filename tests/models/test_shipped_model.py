"""The checkpoint shipped in models/default: it verifies, loads, and reads real house numbers."""

from __future__ import annotations

import csv

import torch

from models.assembly import assemble_number
from models.checkpoint import load_checkpoint, read_checkpoint_meta
from models.optimize import prepare_for_inference
from models.zoom import detect_with_zoom
from service.config import SHIPPED_CHECKPOINT
from tests.conftest import real_data
from training.data import DigitDataset, load_coco_split


def test_shipped_checkpoint_verifies_and_fits_the_size_budget() -> None:
    meta = read_checkpoint_meta(SHIPPED_CHECKPOINT)
    assert meta.weights_dtype == "float16"
    assert meta.zoom.enabled  # the second look at small numbers is part of the shipped reader
    assert (SHIPPED_CHECKPOINT / "weights.safetensors").stat().st_size <= 30_000_000


def test_shipped_model_reads_real_house_numbers() -> None:
    root = real_data("svhn-hw2")
    records = load_coco_split(root / "valid", root / "valid.json")[0][:60]
    model, meta = load_checkpoint(SHIPPED_CHECKPOINT)
    model = prepare_for_inference(model, torch.device("cpu"))
    dataset = DigitDataset(records)
    correct = 0
    with torch.inference_mode():
        for index, record in enumerate(records):
            detections = detect_with_zoom(model, [dataset[index][0]], meta.zoom)[0]
            correct += assemble_number(detections, meta.assembly).value == record.number
    assert correct / len(records) >= 0.6  # 0.818 on the whole split (models/MODEL_CARD.md)


def test_the_card_audit_of_label_omissions_matches_the_validation_labels() -> None:
    """models/card/valid_label_omissions.csv lists validation photos whose labels leave out digits the
    photo shows (checked by eye): each `labelled` number is the split's label, and `seen` holds it."""
    root = real_data("svhn-hw2")
    numbers = {r.image_id: r.number for r in load_coco_split(root / "valid", root / "valid.json")[0]}
    audit = SHIPPED_CHECKPOINT.parent / "card" / "valid_label_omissions.csv"
    rows = list(csv.DictReader(audit.read_text().splitlines()))
    assert len(rows) == 34
    for row in rows:
        labelled, seen = int(row["labelled"]), row["seen"]
        assert numbers[int(row["image_id"])] == labelled
        assert len(seen) > len(str(labelled)) and _is_subsequence(str(labelled), seen)


def _is_subsequence(part: str, whole: str) -> bool:
    rest = iter(whole)
    return all(ch in rest for ch in part)
