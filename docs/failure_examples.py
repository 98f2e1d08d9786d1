"""Draw `models/card/failure_examples.png`: validation photos the shipped pipeline misreads, one or two
of each kind the card's "Known failure modes" names, each with its label, its reading and `p_correct`.

    .venv/bin/python docs/failure_examples.py [--ids 10729 14709 11997 13105 18618 16920 124 10350] \
        [--out models/card/failure_examples.png]

Needs ../shared/data/svhn-hw2 (real SVHN images; they are only drawn into the picture, not copied).
Each photo is read by the service's `Predictor` as served (int8 on the CPU, every part of the
pipeline); green: the digits the number is read from, dashed cyan: the labelled boxes. The kind of
each misread comes from `models/card/valid_misreads_audit.csv` (experiment 101).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drawing import draw_detections, outline  # noqa: E402  (docs/drawing.py)

from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import load_coco_split  # noqa: E402

VALID = ROOT.parent / "shared" / "data" / "svhn-hw2" / "valid"
AUDIT = ROOT / "models" / "card" / "valid_misreads_audit.csv"
# Two wrong digits on clear photos, two 1s lost, one other digit lost, one word read as a digit, and
# two labels that leave out digits the photo shows (the model reads those photos as they show)
DEFAULT_IDS = [10729, 14709, 11997, 13105, 18618, 16920, 124, 10350]

VERDICTS = {
    "label_omits": "the label leaves out digits the photo shows",
    "label_wrong": "the label holds other digits than the photo shows",
}


def audit_notes(path: Path) -> dict[int, str]:
    """image_id -> a short note: what the audit's verdict says of the label where it faults the
    label, else its `note` (what the model got wrong)."""
    with path.open(newline="") as f:
        return {int(r["image_id"]): VERDICTS.get(r["verdict"], r["note"]) for r in csv.DictReader(f)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", type=int, nargs="+", default=DEFAULT_IDS)
    p.add_argument("--out", type=Path, default=ROOT / "models" / "card" / "failure_examples.png")
    args = p.parse_args()
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    records = {r.image_id: r for r in load_coco_split(VALID, VALID.parent / "valid.json")[0]}
    notes = audit_notes(AUDIT)
    cols = 2
    rows = (len(args.ids) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(9, 2.3 * rows), squeeze=False)
    for ax in axes.flat[len(args.ids) :]:
        ax.axis("off")
    for ax, image_id in zip(axes.flat, args.ids, strict=False):
        record = records[image_id]
        pixels = np.array(Image.open(record.path).convert("RGB"))
        findings = predictor.detect([pixels])[0]
        number = predictor.assemble(findings.sites)
        p_correct = predictor.p_correct(number, findings)
        chance = f", p_correct {p_correct:.2f}" if p_correct is not None else ""
        reading = f"{image_id}: label {record.number}, read {number.text or '-'}{chance}"
        draw_detections(ax, pixels, number.digits, 0.0, f"{reading}\n{notes.get(image_id, '')}")
        for box in record.boxes:
            x1, y1, x2, y2 = box.box_xyxy
            outline(ax, (round(x1), round(y1), round(x2), round(y2)), "cyan", "--")
        print(reading)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
