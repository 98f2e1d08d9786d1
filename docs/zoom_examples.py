"""Draw `models/card/zoom_examples.png`: what the second look (models/zoom.py) sees on a few real
validation images - the first pass with its crop, then the crop read again.

    .venv/bin/python docs/zoom_examples.py [--ids 1345 1371 10296 18058] [--out models/card/zoom_examples.png]

Needs ../shared/data/svhn-hw2 (real SVHN images; they are only drawn into the picture, not copied).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drawing import draw_detections  # noqa: E402  (docs/drawing.py)

from models.assembly import assemble_number  # noqa: E402
from models.checkpoint import load_checkpoint  # noqa: E402
from models.inference import outputs_to_detections  # noqa: E402
from models.optimize import prepare_for_inference  # noqa: E402
from models.zoom import zoom_region  # noqa: E402
from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.imaging import to_model_input  # noqa: E402
from training.data import load_coco_split  # noqa: E402

VALID = ROOT.parent / "shared" / "data" / "svhn-hw2" / "valid"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", type=int, nargs="+", default=[1345, 1371, 10296, 18058])
    p.add_argument("--out", type=Path, default=ROOT / "models" / "card" / "zoom_examples.png")
    args = p.parse_args()
    model, meta = load_checkpoint(SHIPPED_CHECKPOINT)
    model = prepare_for_inference(model, torch.device("cpu"))
    truth = {r.image_id: r.number for r in load_coco_split(VALID, VALID.parent / "valid.json")[0]}
    fig, axes = plt.subplots(len(args.ids), 2, figsize=(8, 2.2 * len(args.ids)), squeeze=False)
    for row, image_id in zip(axes, args.ids, strict=True):
        pixels = np.array(Image.open(VALID / f"{image_id}.png").convert("RGB"))
        with torch.inference_mode():
            first = outputs_to_detections(model([to_model_input(pixels)])[0])
            crop = zoom_region(
                first, *pixels.shape[:2], meta.detector.min_size, meta.detector.max_size, meta.zoom
            )
            x1, y1, x2, y2 = crop or (0, 0, pixels.shape[1], pixels.shape[0])
            second = outputs_to_detections(model([to_model_input(pixels[y1:y2, x1:x2])])[0])
        read_first = assemble_number(first, meta.assembly).text or "-"
        draw_detections(
            row[0], pixels, first, meta.assembly.score_threshold, f"{image_id}: first pass reads {read_first}"
        )
        row[0].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", linestyle="--"))
        read_second = assemble_number(second, meta.assembly).text or "-"
        label = f"second look reads {read_second} (label {truth[image_id]})" if crop else "no second look"
        draw_detections(row[1], pixels[y1:y2, x1:x2], second, meta.assembly.score_threshold, label)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
