"""Draw `models/card/search_examples.png`: the search of a large photo (models/zoom.py) on a few real
validation photos pasted into digit-free scenes 6 times their size (`training.scenes`) - the first
pass, the tiles and what they locate, then the crop read again.

    .venv/bin/python docs/search_examples.py [--ids 1035 1043 1216 1076] [--factor 6] \
        [--out models/card/search_examples.png]

Needs ../shared/data/svhn-hw2 (real SVHN images; they are only drawn into the picture, not copied).
The detector runs as served on the CPU (int8); the numbers are the detector's own readings of the
crop (the service also refines the boxes and reads every digit again).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drawing import draw_detections, outline  # noqa: E402  (docs/drawing.py)

from models.assembly import assemble_number  # noqa: E402
from models.optimize import load_prepared_detector  # noqa: E402
from models.zoom import detect_alone, search, search_tiles, zoom_region  # noqa: E402
from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.imaging import to_model_input  # noqa: E402
from training.data import load_coco_split  # noqa: E402
from training.scenes import place_in_scene  # noqa: E402

VALID = ROOT.parent / "shared" / "data" / "svhn-hw2" / "valid"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", type=int, nargs="+", default=[1035, 1043, 1216, 1076])
    p.add_argument("--factor", type=int, default=6)
    p.add_argument("--out", type=Path, default=ROOT / "models" / "card" / "search_examples.png")
    args = p.parse_args()
    model, meta, _ = load_prepared_detector(SHIPPED_CHECKPOINT, torch.device("cpu"))
    zoom, size = meta.zoom, (meta.detector.min_size, meta.detector.max_size)
    records = {r.image_id: r for r in load_coco_split(VALID, VALID.parent / "valid.json")[0]}
    fig, axes = plt.subplots(len(args.ids), 3, figsize=(12, 2.4 * len(args.ids)), squeeze=False)
    for row, image_id in zip(axes, args.ids, strict=True):
        photo = Image.open(records[image_id].path).convert("RGB")
        pixels = np.array(place_in_scene(photo, args.factor, random.Random(image_id))[0])
        image = to_model_input(pixels)
        with torch.inference_mode():
            first = detect_alone(model, image)
            tiled = search(model, image, zoom.search_tiles, float(model.roi_heads.nms_thresh))
            crop = zoom_region(tiled, *pixels.shape[:2], *size, zoom)
            x1, y1, x2, y2 = crop or (0, 0, pixels.shape[1], pixels.shape[0])
            second = detect_alone(model, image[:, y1:y2, x1:x2])
        located = sum(d.score >= zoom.locate_score for d in first)
        draw_detections(
            row[0],
            pixels,
            first,
            zoom.locate_score,
            f"{image_id} in a {args.factor} x scene: first pass locates {located}",
        )
        draw_detections(
            row[1],
            pixels,
            tiled,
            zoom.locate_score,
            f"{zoom.search_tiles} x {zoom.search_tiles} tiles: what they locate, the crop",
        )
        for tile in search_tiles(*pixels.shape[:2], zoom.search_tiles, size[0]):
            outline(row[1], tile, "white", ":")
        if crop:
            outline(row[1], crop, "yellow", "--")
        read = assemble_number(second, meta.assembly).text or "-"
        title = f"second look reads {read} (label {records[image_id].number})" if crop else "no crop"
        draw_detections(row[2], pixels[y1:y2, x1:x2], second, meta.assembly.score_threshold, title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
