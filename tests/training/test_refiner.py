"""Training the box refiner, shipping it inside a checkpoint, and evaluation scoring its boxes."""

import json
import random
from pathlib import Path

import pytest
import torch

from models.assembly import Detection
from models.boxes import box_iou
from models.checkpoint import read_checkpoint_meta
from models.refiner import BoxRefiner, box_deltas, box_masks, has_refiner, load_refiner, shift_box
from training import evaluate, export, refiner
from training.data import DigitBox, ImageRecord
from training.refiner import (
    BoxJitter,
    RefineCrops,
    RefineItem,
    matched_detections,
    off_digit_box,
    off_digit_items,
    refine_loss,
    refined_iou,
)

SMALL = ["--epochs", "2", "--max-steps", "3", "--batch-size", "8", "--size", "24", "--width", "4"]
SMALL += ["--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def refiner_dir(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refiner")
    refiner.main(["--config", "fast", "--data", str(synth_dir), "--out", str(out), *SMALL, "--step", "0.8"])
    return out


def test_jitter_moves_a_box_but_keeps_it_on_the_label() -> None:
    jitter, label = BoxJitter(min_iou=0.5), (10.0, 10.0, 30.0, 50.0)
    boxes = [jitter(label, random.Random(i)) for i in range(200)]
    ious = [box_iou(b, label) for b in boxes]
    assert min(ious) >= 0.5 and sum(i < 0.95 for i in ious) > 150
    assert jitter(label, random.Random(7)) == jitter(label, random.Random(7))


def test_crops_target_the_label_from_the_start_box_and_validation_crops_repeat() -> None:
    image = (torch.rand(3, 40, 80) * 255).to(torch.uint8)
    label = (20.0, 5.0, 32.0, 35.0)
    items = [(0, label, None), (0, label, (18.0, 8.0, 33.0, 30.0))]
    valid = RefineCrops([image], items, refiner.RefineParams(size=24), BoxJitter(), train=False)
    crop, deltas, on_digit = valid[1]
    assert on_digit.item() == 1.0
    assert crop.shape == (4, 24, 24) and shift_box((18.0, 8.0, 33.0, 30.0), deltas.tolist()) == pytest.approx(
        label
    )
    assert torch.equal(valid[0][1], valid[0][1]) and valid.start_box(0) != label
    assert shift_box(valid.start_box(0), valid[0][1].tolist()) == pytest.approx(label, abs=1e-4)
    train = RefineCrops([image], items, refiner.RefineParams(size=24), BoxJitter(), train=True)
    coloured = train[1][0]  # colours jittered, the box's rectangle not
    assert torch.equal(coloured[3], box_masks([(18.0, 8.0, 33.0, 30.0)], refiner.RefineParams(size=24))[0, 0])


def test_refined_iou_is_the_iou_of_the_moved_box_with_its_label() -> None:
    rng = random.Random(0)
    for _ in range(20):
        box = (rng.uniform(0, 20), rng.uniform(0, 20), rng.uniform(25, 40), rng.uniform(45, 80))
        label = BoxJitter()(box, rng)
        predicted = [rng.gauss(0, 0.1) for _ in range(4)]
        step = rng.choice([0.5, 0.75, 1.0])
        expected = box_iou(shift_box(box, predicted, step), label)
        got = refined_iou(torch.tensor([predicted]), torch.tensor([box_deltas(box, label)]), step)
        assert got.item() == pytest.approx(expected, abs=1e-5)
    apart = refined_iou(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), torch.tensor([[2.0, 0.0, 2.0, 0.0]]), 1.0)
    assert apart.item() == 0.0


def test_the_fit_column_adds_its_own_loss_and_leaves_the_deltas_alone() -> None:
    target = torch.tensor([[0.1, -0.1, 0.0, 0.05], [0.0, 0.0, 0.0, 0.0]])
    deltas = torch.zeros(2, 4, requires_grad=True)
    plain = refine_loss(deltas, target)
    fit = torch.zeros(2, 1, requires_grad=True)
    judged = refine_loss(torch.cat([deltas, fit], 1), target, step=0.75)
    assert judged.item() > plain.item()
    judged.backward()
    reached = refined_iou(torch.zeros(2, 4), target, 0.75)  # what the fit should say
    assert fit.grad is not None and torch.allclose(fit.grad[:, 0], (0.5 - reached) / 2)
    deltas_only = torch.autograd.grad(refine_loss(deltas, target), deltas)[0]
    assert deltas.grad is not None and torch.allclose(deltas.grad, deltas_only)


def test_matched_detections_keep_the_detector_boxes_on_a_label() -> None:
    record = ImageRecord(
        1, Path("a.png"), 80, 40, (DigitBox((10, 5, 20, 35), 3), DigitBox((30, 5, 40, 35), 4))
    )
    found = {
        1: [
            Detection((11, 6, 21, 34), 3, 0.9),  # on the 3
            Detection((29, 5, 41, 30), 7, 0.5),  # on the 4, whatever its class
            Detection((60, 5, 70, 35), 1, 0.9),  # on nothing
            Detection((10, 5, 20, 35), 3, 0.05),  # too faint
        ],
        2: [Detection((0, 0, 5, 5), 1, 0.9)],  # an image not among the records
    }
    assert matched_detections([record], found) == [
        RefineItem(0, (10, 5, 20, 35), (11, 6, 21, 34)),
        RefineItem(0, (30, 5, 40, 35), (29, 5, 41, 30)),
    ]
    assert matched_detections([record], found, min_score=0.0, off_digit=True) == [
        RefineItem(0, (10, 5, 20, 35), (60, 5, 70, 35), on_digit=False)  # overlaps none: the first label
    ]


def test_off_digit_boxes_keep_a_label_size_and_stay_off_every_digit() -> None:
    labels = [(20.0, 10.0, 30.0, 40.0), (30.0, 10.0, 40.0, 40.0), (70.0, 5.0, 85.0, 30.0)]
    rng, sizes = random.Random(0), {(b[2] - b[0], b[3] - b[1]) for b in labels}
    boxes = [off_digit_box(labels, 120, 50, rng) for _ in range(300)]
    assert all(b is not None for b in boxes)
    for b in boxes:
        assert b is not None and b[0] >= 0 and b[1] >= 0 and b[2] <= 120 and b[3] <= 50
        assert max(box_iou(b, label) for label in labels) < 0.3
        assert (round(b[2] - b[0], 6), round(b[3] - b[1], 6)) in sizes
    beside = sum(abs(b[1] - 10) < 6 and b[0] < 55 for b in boxes if b is not None)
    assert 60 < beside < 240  # about half are moved sideways from a digit of the number
    assert off_digit_box([(0.0, 0.0, 40.0, 40.0)], 40, 40, rng) is None  # the digit fills the image
    record = ImageRecord(3, Path("a.png"), 120, 50, tuple(DigitBox(b, 1) for b in labels))
    empty = ImageRecord(4, Path("b.png"), 120, 50, ())
    items = off_digit_items([empty, record], seed=0)
    assert len(items) == 1 and items[0].image == 1 and not items[0].on_digit
    assert items == off_digit_items([empty, record], seed=0) != off_digit_items([empty, record], seed=1)
    assert items[0].start is not None and items[0].label == max(
        labels, key=lambda label: box_iou(label, items[0].start)
    )


def test_boxes_on_no_digit_teach_the_fit_and_not_the_deltas() -> None:
    target = torch.tensor([[0.1, -0.1, 0.0, 0.05], [3.0, 0.0, 3.0, 0.0]])  # the 2nd: far off its label
    on_digit = torch.tensor([1.0, 0.0])
    deltas = torch.zeros(2, 4, requires_grad=True)
    fit = torch.zeros(2, 1, requires_grad=True)
    loss = refine_loss(torch.cat([deltas, fit], 1), target, 0.75, on_digit)
    loss.backward()
    assert deltas.grad is not None and torch.all(deltas.grad[1] == 0) and torch.any(deltas.grad[0] != 0)
    assert fit.grad is not None and fit.grad[1, 0] > 0  # pushed towards "no fit" (IoU 0)
    first_only = refine_loss(deltas[:1], target[:1])
    assert (
        loss - nn_bce_half(torch.tensor([0.0, 0.0]), refined_iou(torch.zeros(2, 4), target, 0.75))
    ).item() == (pytest.approx(first_only.item()))


def nn_bce_half(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


def test_refiner_run_writes_a_trained_refiner_with_its_settings(refiner_dir: Path) -> None:
    rows = [json.loads(line) for line in (refiner_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and (refiner_dir / "refiner_training.png").stat().st_size > 0
    assert all(0.4 <= r["val_iou_before"] <= 1.0 and r["val_iou_after"] > 0 for r in rows)
    assert rows[0]["val_iou_before"] == rows[1]["val_iou_before"]  # the same validation boxes every epoch
    model, meta = load_refiner(refiner_dir)
    assert (meta.width, meta.params.size, meta.params.step, meta.params.box_channel) == (4, 24, 0.8, True)
    assert meta.metrics["last_epoch"] == rows[-1]
    torch.manual_seed(0)
    fresh = BoxRefiner(width=4).state_dict()
    trained = model.state_dict()
    assert any(not torch.equal(fresh[k], trained[k]) for k in trained if trained[k].is_floating_point())


def test_the_same_flags_train_the_same_refiner_and_site_detections_add_boxes(
    synth_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = json.loads((synth_dir / "train.json").read_text())
    rows = [
        {
            "image_id": a["image_id"],
            "bbox": [a["bbox"][0] + 1, *a["bbox"][1:]],
            "category_id": 1,
            "score": 0.9,
        }
        for a in doc["annotations"]
    ]
    (tmp_path / "pred.json").write_text(json.dumps(rows))
    args = ["--config", "fast", "--data", str(synth_dir), *SMALL, "--epochs", "1"]
    torch.manual_seed(123)
    first = refiner.main([*args, "--out", str(tmp_path / "a")])
    torch.manual_seed(456)
    again = refiner.main([*args, "--out", str(tmp_path / "b")])
    other = refiner.main([*args, "--out", str(tmp_path / "c"), "--seed", "1"])
    assert first.sha256 == again.sha256 != other.sha256
    rgb = refiner.main([*args, "--out", str(tmp_path / "rgb"), "--no-box-channel"])
    assert rgb.params.box_channel is False and load_refiner(tmp_path / "rgb")[0].box_channel is False
    judging = refiner.main([*args, "--out", str(tmp_path / "fit"), "--fit-head", "--step", "0.75"])
    assert judging.fit_head and judging.params.step == 0.75 and load_refiner(tmp_path / "fit")[0].fit_head
    with caplog.at_level("INFO"):
        refiner.main([*args, "--out", str(tmp_path / "d"), "--site-detections", str(tmp_path / "pred.json")])
    n = len(doc["annotations"])
    assert (
        f"{n} detector boxes on labelled digits" in caplog.text
        and f"refiner crops: {2 * n} train" in caplog.text
    )
    (tmp_path / "half1.json").write_text(json.dumps(rows[: n // 2]))
    (tmp_path / "half2.json").write_text(json.dumps(rows[n // 2 :]))
    caplog.clear()
    with caplog.at_level("INFO"):  # several files add up
        refiner.main(
            [*args, "--out", str(tmp_path / "g"), "--site-detections", str(tmp_path / "half1.json"),
             str(tmp_path / "half2.json")]
        )  # fmt: skip
    assert f"{n} detector boxes on labelled digits" in caplog.text
    with pytest.raises(SystemExit, match="fit head"):
        refiner.main([*args, "--out", str(tmp_path / "e"), "--negatives"])
    rows.append({**rows[0], "bbox": [500.0, 500.0, 5.0, 5.0]})  # on nothing
    (tmp_path / "pred.json").write_text(json.dumps(rows))
    caplog.clear()
    with caplog.at_level("INFO"):
        meta = refiner.main(
            [*args, "--out", str(tmp_path / "f"), "--fit-head", "--negatives", "--site-detections",
             str(tmp_path / "pred.json")]
        )  # fmt: skip
    off = int(caplog.text.split(" off-digit boxes")[0].split()[-1])
    assert meta.fit_head and "1 detector boxes on no digit" in caplog.text and 0 < off <= len(doc["images"])
    assert f"refiner crops: {2 * n + 1 + off} train" in caplog.text


def test_export_ships_the_refiner_and_evaluation_scores_its_boxes(
    refiner_dir: Path, trained_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    shipped = export.main(["--checkpoint", str(trained_run / "last"), "--out", str(tmp_path / "ck")])
    export.main(["--checkpoint", str(shipped), "--out", str(shipped), "--refiner", str(refiner_dir)])
    read_checkpoint_meta(shipped)  # the detector's own hash is unaffected
    assert has_refiner(shipped) and load_refiner(shipped)[1].dtype == "float16"
    again = export.main(
        ["--checkpoint", str(shipped), "--out", str(tmp_path / "again"), "--refiner-step", "0.5"]
    )
    assert load_refiner(again)[1].params.step == 0.5  # a refiner in the source comes along
    with pytest.raises(ValueError, match="without a refiner"):  # nothing for the step to apply to
        export.main(
            ["--checkpoint", str(trained_run / "last"), "--out", str(tmp_path / "x"), "--refiner-step", "0.5"]
        )

    common = ["--checkpoint", str(shipped), "--data", str(synth_dir), "--split", "valid"]
    common += ["--device", "cpu", "--workers", "0", "--score-threshold", "0.0"]
    evaluate.main([*common, "--out", str(tmp_path / "with")])
    evaluate.main([*common, "--out", str(tmp_path / "without"), "--no-refiner"])
    info = json.loads((tmp_path / "with" / "evaluation.json").read_text())
    assert info["refiner"]["params"]["step"] == 0.8
    assert json.loads((tmp_path / "without" / "evaluation.json").read_text())["refiner"] is None
    moved = json.loads((tmp_path / "with" / "pred.json").read_text())
    kept = json.loads((tmp_path / "without" / "pred.json").read_text())
    assert len(moved) == len(kept) > 0
    assert [(p["image_id"], p["category_id"], p["score"]) for p in moved] == [
        (p["image_id"], p["category_id"], p["score"]) for p in kept
    ]
    assert all(p["bbox"] != q["bbox"] for p, q in zip(moved, kept, strict=True))
